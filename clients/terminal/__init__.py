"""kanban-terminal: the screen of a station's operator, driven by a barcode scanner."""
