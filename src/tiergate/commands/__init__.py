"""One module per ``tiergate`` subcommand: ``add_parser(subparsers, name)`` and a handler."""
