from clients.kanbanctl.cli import main

main()
