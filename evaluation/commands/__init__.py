"""One module per `secsplit` subcommand, each with add_parser(sub) and run(args)."""
