"""CLI subcommands. Each module here defines `register(subparsers)`; `slidescan.app.cli`
discovers them, so adding a subcommand never touches a shared file."""
