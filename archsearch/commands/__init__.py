"""The subcommands of the `archsearch` CLI, one per file (`_shared` holds what they share).

Each public module here has `register(subparsers)`: it adds one subcommand with
`subparsers.add_parser(name, help=...)` and sets `run=<handler>` via `set_defaults`. The
handler takes the parsed `argparse.Namespace` and returns the exit code; it raises
`ArchsearchError` for bad input (the CLI prints one line and exits with 2). `archsearch.cli`
discovers the modules, so adding a command touches no other file.
"""
