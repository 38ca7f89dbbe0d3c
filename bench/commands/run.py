"""`bench run`: train every cell of a matrix (resumable, claimed per cell; here, in --workers or as
SLURM tasks) and print the leaderboard."""

from __future__ import annotations

from .common import add_filters, add_launch_options, add_margin, add_overrides, add_run_options, add_tune, \
    add_until_decided, cells_from, finish_run, launch_options, run_name, run_options, sequential_design, \
    show_both_verdicts, tuning_options

HELP = "train every cell of a matrix and print the leaderboard"


def add_parser(sub):
    p = sub.add_parser("run", help=HELP)
    add_filters(p)
    add_run_options(p)
    add_margin(p)
    add_until_decided(p)
    add_tune(p)
    add_launch_options(p)
    add_overrides(p)
    return p


def train(name, cells, opts, how, args):
    from ..launch.launcher import launch
    from ..launch.rounds import undecided_comparisons, until_decided

    design = sequential_design(args, opts.out / name, len({c.config.seed for c in cells}))
    if design is not None:
        return until_decided(name, cells, opts, how, design, undecided_comparisons(design))
    return launch(name, cells, opts, how), cells


def main(args) -> int:
    from ..results.tables.leaderboard import check_margin

    opts = run_options(args)  # a bad --out is one line before the matrix is expanded
    how = launch_options(args)
    tuning = tuning_options(args)
    check_margin(args.margin)
    matrix, cells = cells_from(args)  # the whole matrix is validated before anything trains
    name = run_name(args, matrix)
    sequential_design(args, opts.out / name, len({c.config.seed for c in cells}))  # one line before training
    launched, cells = train(name, cells, opts, how, args)
    if tuning is not None and (launched.here or how.dry_run):
        return tuned_run(name, cells, opts, how, args, tuning, launched)
    if not launched.here:
        return 0
    return max(finish_run(name, cells, launched.records, opts, args.margin), launched.code)


def tuned_run(name, cells, opts, how, args, tuning, launched) -> int:
    """--tune lr: the shared-LR run's leaderboard, the tuning grid, the comparison on fresh seeds at each
    group's best LR (its own leaderboard, OUT/NAME-tuned/), and both verdicts side by side."""
    from ..console import out
    from ..launch.tuning import SUFFIX, tune

    code = launched.code
    if launched.here:
        code = max(code, finish_run(name, cells, launched.records, opts, args.margin))
    out.print(f"--tune lr: each group gets {tuning.describe()} (into {name + SUFFIX})", highlight=False)
    seeds = {c.config.seed for c in cells}
    tuned_launch, tuned_cells, _ = tune(name, cells, opts, how, tuning)
    if not tuned_launch.here:
        return code
    first = [c for c in tuned_cells if c.config.seed in seeds]
    tuned_name = name + "-tuned"
    run, first = train(tuned_name, first, opts, how, args)
    if not run.here:
        return code
    code = max(code, run.code, finish_run(tuned_name, first, run.records, opts, args.margin))
    show_both_verdicts(name, tuned_name, opts, args.margin, tuning)
    return code
