"""One module per `bench` subcommand, each with ``add_parser(sub)`` and ``main(args)``; what they
share is in common.py. bench/cli.py maps command names to these modules."""
