"""`bench`: the command table (one module of bench/commands/ per subcommand, each ``add_parser`` and
``main``), plugin loading, and errors as exit codes: a bad input is one line and exit 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .commands.common import HelpFormatter
from .errors import ConfigError, Interrupted

COMMANDS = ("list", "plan", "run", "table", "overhead", "sweep", "ladder", "cost", "report", "eval", "data", "check",
            "status", "compare", "claims")
PLUGIN_HELP = ("import MODULE (a dotted name or a .py path) first: it registers its own activations, schemes, norms "
               "or probes (repeatable; see docs/plugins.md). Installed packages' 'llm_arch_bench.plugins' entry "
               "points and $BENCH_PLUGINS are loaded too")


class Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        super().__init__(**{"formatter_class": HelpFormatter, **kwargs})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """With ``command``, only that subcommand's parser is built in full: `bench --help` imports no torch."""
    parser = Parser(prog="bench", description="Benchmark FFN activations and normalization schemes for LLMs.")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=PLUGIN_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"bench.commands.{name}")
        if command in (None, name) or not hasattr(module, "HELP"):
            p = module.add_parser(sub)
            p.formatter_class = HelpFormatter  # one default per option, whoever built the parser
            p.set_defaults(func=module.main)
        else:
            sub.add_parser(name, help=module.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    named = [a for i, a in enumerate(argv) if a in COMMANDS and (i == 0 or argv[i - 1] != "--plugin")]
    args = build_parser(named[0] if named else "").parse_args(argv)
    args.argv = argv  # the command line every record keeps, whichever process trains the cell
    from models import UnknownName
    from rich.markup import escape

    from .console import err
    from .plugins import export_env, load_entry_points, load_env, load_plugins

    try:
        load_entry_points()  # before any matrix or name is checked: plugins add names
        load_env()
        load_plugins(args.plugin, "flag")
        export_env(args.plugin)  # worker processes started from here load them too
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, not in the interpreter's exit
        return code
    except (ConfigError, UnknownName) as e:  # escaped: "pip install 'llm-arch-bench[extras]'" is no markup
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except Interrupted as e:  # the cell was saved and recorded as `interrupted`
        err.print(f"[bold yellow]stopped:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return e.exit_code
    except BrokenPipeError:  # `bench plan --json | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a writer killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
