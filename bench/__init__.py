"""The harness: `run/` trains cells, `results/` reads what they wrote, `cli.py` is the command line."""
