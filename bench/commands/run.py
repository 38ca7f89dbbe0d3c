"""`bench run`: train every cell of a matrix (resumable, claimed per cell; here, in --workers or as
SLURM tasks) and print the leaderboard."""

from __future__ import annotations

from .common import add_filters, add_launch_options, add_margin, add_overrides, add_run_options, add_until_decided, \
    cells_from, finish_run, launch_options, run_name, run_options, sequential_design

HELP = "train every cell of a matrix and print the leaderboard"


def add_parser(sub):
    p = sub.add_parser("run", help=HELP)
    add_filters(p)
    add_run_options(p)
    add_margin(p)
    add_until_decided(p)
    add_launch_options(p)
    add_overrides(p)
    return p


def main(args) -> int:
    from ..launch.launcher import launch
    from ..launch.rounds import undecided_comparisons, until_decided
    from ..results.tables.leaderboard import check_margin

    opts = run_options(args)  # a bad --out is one line before the matrix is expanded
    how = launch_options(args)
    check_margin(args.margin)
    matrix, cells = cells_from(args)  # the whole matrix is validated before anything trains
    name = run_name(args, matrix)
    design = sequential_design(args, opts.out / name, len({c.config.seed for c in cells}))
    if design is not None:
        launched, cells = until_decided(name, cells, opts, how, design, undecided_comparisons(design))
    else:
        launched = launch(name, cells, opts, how)
    if not launched.here:
        return 0
    return max(finish_run(name, cells, launched.records, opts, args.margin), launched.code)
