"""Subcommands of the `archsearch` CLI that live in their own files.

Each public module here has `register(subparsers)`: it adds one subcommand with
`subparsers.add_parser(name, help=...)` and sets `run=<handler>` via `set_defaults`. The
handler takes the parsed `argparse.Namespace` and returns the exit code; it raises
`ArchsearchError` for bad input (the CLI prints one line and exits with 2). `archsearch.cli`
discovers the modules, so adding a command touches no other file.
"""
