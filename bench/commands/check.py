"""`bench check`: the CI regression check; its parser and work are bench.run.check's."""

from __future__ import annotations

HELP = "CI regression check: every activation x scheme at nano scale vs the committed baseline"


def add_parser(sub):
    from ..run.check import add_check_parser

    return add_check_parser(sub)


def main(args) -> int:
    from ..run.check import cmd_check

    return cmd_check(args)
