"""kanbanctl: the engineers' command line for a kanban line (see cli.py)."""
