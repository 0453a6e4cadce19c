"""One module per `optforge` subcommand."""
