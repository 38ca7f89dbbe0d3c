"""`bench compare A B`: two result folders side by side, cells matched by identity; the comparison is
bench.results.tables.folders'."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import FORMATS, add_margin, report_problems, split_list, target_folder

HELP = "two result folders (or matrices) side by side, with the paired statistics where cells match"


def add_parser(sub):
    p = sub.add_parser(
        "compare", help=HELP,
        description="Compare two results: the same matrix run on two code versions, or two matrices that differ in "
                    "one axis. A cell's identity is its scale, activation, scheme, seed and config, except the "
                    "fields that set A apart from B (one value throughout A, another throughout B) and those named "
                    "by --ignore. Each group present on both sides gets A's and B's mean validation PPL with its "
                    "95% CI, the difference B - A, the paired t-test over shared seeds (Welch's when fewer than 2 "
                    "are shared), Holm-corrected, and a verdict: B better, worse, equivalent within --margin, or "
                    "undecided with what would decide it; every cell without a match is listed with the reason.")
    for name in ("A", "B"):
        p.add_argument(name.lower(), metavar=name, help=f"{name}: a results folder, or a matrix name/YAML looked up "
                                                        "in --results")
    p.add_argument("--results", dest="results_root", default="results", metavar="DIR",
                   help="the results folder a matrix name is looked up in")
    p.add_argument("--format", choices=FORMATS, default="md",
                   help="output format: md (Markdown), rich (terminal), csv (one row per group, then the unmatched "
                        "cells), latex (booktabs tables; needs \\usepackage{booktabs,graphicx})")
    add_margin(p)
    p.add_argument("--ignore", default=None, metavar="FIELD,...",
                   help="config fields (e.g. train.lr) to leave out of a cell's identity, beyond those that set A "
                        "apart from B on their own")
    return p


def side(label: str, target: str, results_root: str):
    """A or B as a Side: its records, each problem named; one line naming the side when it has none."""
    from models import UnknownName

    from ..errors import ConfigError
    from ..results.tables.folders import Side
    from ..results.records import load_records

    try:
        folder = target_folder(argparse.Namespace(target=target, results_root=results_root))
    except (ConfigError, UnknownName) as e:
        raise ConfigError(f"{label} {target!r} is not a results folder, and {e}") from None
    if not folder.is_dir():
        raise ConfigError(f"{label}: no results folder {folder} for matrix {target!r} (run `bench run {target}` "
                          "first, or name a folder)")
    records, problems = load_records(folder)
    report_problems(problems)
    if not records:
        raise ConfigError(f"{label}: no finished cells under {folder} (run `bench run` first)")
    return Side(label, folder, records)


def main(args) -> int:
    from ..console import err, out
    from ..errors import ConfigError
    from ..results.tables.folders import RENDER, compare_sides, comparison_tables, print_rich
    from ..results.tables.leaderboard import check_margin
    from ..results.stats.verdicts import DEFAULT_MARGIN

    check_margin(args.margin)

    a, b = side("A", args.a, args.results_root), side("B", args.b, args.results_root)
    if Path(a.folder).resolve() == Path(b.folder).resolve():
        raise ConfigError(f"A and B are the same folder, {a.folder}: name two results")
    comparison = compare_sides(a, b, split_list(args.ignore), args.margin or DEFAULT_MARGIN)
    if not comparison.groups:
        err.print("[yellow]warning:[/] no cell of A matches a cell of B; the unmatched cells say why",
                  highlight=False)
    tables = comparison_tables(comparison)
    if args.format == "rich":
        print_rich(tables, out)
    else:
        print(RENDER[args.format](tables), end="")
    return 0
