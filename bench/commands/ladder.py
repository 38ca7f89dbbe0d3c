"""`bench ladder`: a matrix's activations x schemes x seeds over a ladder of model sizes (bench/run/config/ladder.py),
trained by the ordinary runner (claims, resume, --workers, --slurm), then fitted as scaling laws with intervals,
predictions and crossovers (bench/results/stats/laws.py)."""

from __future__ import annotations

from .common import add_filters, add_launch_options, add_margin, add_overrides, add_run_options, add_tune, \
    add_until_decided, cells_from, finish_run, launch_options, run_name, run_options, sequential_design, \
    show_both_verdicts, tuning_options

HELP = "a scale ladder: train the matrix at log-spaced sizes, fit scaling laws, predict, find crossovers"


def add_parser(sub):
    p = sub.add_parser("ladder", help=HELP, description=HELP + " (docs/scaling-laws.md)")
    add_filters(p)
    p.add_argument("--params", default="2e4:1e6", metavar="LOW:HIGH",
                   help="the range of non-embedding parameters the rungs span")
    p.add_argument("--rungs", type=int, default=5, help="model sizes, log-spaced over --params")
    p.add_argument("--tokens-per-param", type=float, default=20.0,
                   help="training tokens per non-embedding parameter of each rung (Chinchilla's 20)")
    p.add_argument("--aspect", type=int, default=32, help="d_model / n_layers of every rung")
    p.add_argument("--head-dim", type=int, default=32, help="attention head size of every rung (d_model is a multiple)")
    p.add_argument("--predict", type=float, default=None, metavar="N",
                   help="also predict each group's loss at N non-embedding parameters, with an interval")
    add_run_options(p)
    add_margin(p)
    add_until_decided(p)
    add_tune(p)
    p.add_argument("--tune-rungs", type=int, default=2, metavar="R",
                   help="with --tune lr: tune the R smallest rungs and extrapolate each group's LR to the others "
                        "with a power law in N fitted through them")
    add_launch_options(p)  # --dry-run: the rungs and the cells, nothing trained
    add_overrides(p)
    return p


def ladder_cells(args):
    """(matrix, rungs, cells): every matrix cell at every rung, its id tagged with the rung's size."""
    from ..errors import ConfigError
    from ..run.config.ladder import build_ladder, parse_range
    from ..run.config.matrix import make_cell

    matrix, base = cells_from(args)
    if not base:
        raise ConfigError("the matrix has no cells to put on a ladder")
    try:
        low, high = parse_range(args.params)
        cfg = base[0].config
        t = cfg.train
        rungs = build_ladder(low, high, args.rungs, cfg.model, t.batch_size * cfg.model.block_size * t.grad_accum,
                             t.lr, tokens_per_param=args.tokens_per_param, aspect=args.aspect, head_dim=args.head_dim)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    from .common import overrides_from

    overrides = overrides_from(args)
    cells = [make_cell({**matrix.fixed, **dict(c.axes), **r.settings()}, overrides,
                       {**dict(c.axes), "N": f"{r.params / 1e3:.0f}k"}) for r in rungs for c in base]
    return matrix, rungs, cells


def show_rungs(rungs, cells, console) -> None:
    from rich.table import Table

    t = Table(title=f"ladder: {len(rungs)} rungs, {len(cells)} cells (tokens = tokens-per-param x N)",
              title_justify="left")
    for col in ("rung", "d_model", "layers", "heads", "h_ref", "N (non-emb)", "tokens", "steps", "warmup", "lr"):
        t.add_column(col, justify="right")
    for r in rungs:
        t.add_row(r.name, str(r.d_model), str(r.n_layers), str(r.n_heads), str(r.ref_intermediate_size),
                  f"{r.params:,}", f"{r.tokens:,}", f"{r.max_steps:,}", str(r.warmup_steps), f"{r.lr:.3g}")
    console.print(t)


def train(name, cells, opts, how, args):
    from ..launch.launcher import launch
    from ..launch.rounds import undecided_comparisons, until_decided

    design = sequential_design(args, opts.out / name, len({c.config.seed for c in cells}))
    if design is not None:  # every rung's comparisons get seeds until decided, each its own
        return until_decided(name, cells, opts, how, design, undecided_comparisons(design))
    return launch(name, cells, opts, how), cells


def finish_ladder(name, cells, launched, opts, args) -> int:
    """The leaderboard and the scaling laws of one ladder folder (ladder.md beside the records)."""
    from ..atomic import atomic_write
    from ..console import err, out
    from ..results.records import load_records
    from ..results.stats.laws import fit_laws
    from ..results.tables.comparisons import law_tables, laws_markdown, print_laws

    code = max(finish_run(name, cells, launched.records, opts, args.margin), launched.code)
    records, _ = load_records(opts.out / name)
    laws = fit_laws(records, args.predict)
    tables = law_tables(laws)
    print_laws(tables, out if code == 0 else err, name)
    if laws.fits:  # the same tables beside the records, as `bench table DIR --ladder --format md` prints them
        atomic_write(opts.out / name / "ladder.md", laws_markdown(tables))
    return code


def main(args) -> int:
    from ..console import err, out
    from ..errors import ConfigError
    from ..results.tables.leaderboard import check_margin

    opts = run_options(args)
    how = launch_options(args)
    tuning = tuning_options(args)
    if tuning is None and args.tune_rungs != 2:
        raise ConfigError("--tune-rungs sets the budget of --tune lr: add --tune lr, or drop it")
    check_margin(args.margin)
    matrix, rungs, cells = ladder_cells(args)
    if tuning is not None and not 2 <= args.tune_rungs <= len(rungs):
        raise ConfigError(f"--tune-rungs takes 2 to {len(rungs)} (the ladder's rungs), got {args.tune_rungs}")
    args.name = args.name or f"{matrix.name}-ladder"
    name = run_name(args, matrix)
    show_rungs(rungs, cells, out)
    if len(rungs) < args.rungs:
        err.print(f"[yellow]warning:[/] {args.rungs - len(rungs)} rung(s) rounded to the same shape as another and "
                  f"were dropped: widen --params or lower --head-dim/--aspect", highlight=False)
    sequential_design(args, opts.out / name, len({c.config.seed for c in cells}))  # one line before training
    launched, cells = train(name, cells, opts, how, args)
    code = finish_ladder(name, cells, launched, opts, args) if launched.here else 0
    if tuning is None or not (launched.here or how.dry_run):
        return code
    return max(code, tuned_ladder(name, rungs, cells, opts, how, args, tuning))


def tuned_ladder(name, rungs, cells, opts, how, args, tuning) -> int:
    """--tune lr: tune the smallest rungs, extrapolate each group's LR with a power law in N, train the
    ladder again on fresh seeds at those LRs (OUT/NAME-tuned/), and set both verdicts side by side."""
    from ..console import out
    from ..launch.tuning import SUFFIX, tune_ladder
    from ..results import render
    from ..results.tables.comparisons import lr_law_table

    sizes = {f"{r.params / 1e3:.0f}k": float(r.params) for r in rungs}
    out.print(f"--tune lr: the {args.tune_rungs} smallest rungs, each group {tuning.describe()} (into "
              f"{name + SUFFIX})", highlight=False)
    seeds = {c.config.seed for c in cells}
    tuned_launch, tuned_cells, laws = tune_ladder(name, cells, sizes, args.tune_rungs, opts, how, tuning)
    if not tuned_launch.here:
        return tuned_launch.code
    table = lr_law_table(list(laws.values()), sorted(sizes.values()))
    if table is not None:
        render.rich(out, table, render.titled(name, table.title))
    tuned_name = name + "-tuned"
    run, first = train(tuned_name, [c for c in tuned_cells if c.config.seed in seeds], opts, how, args)
    if not run.here:
        return run.code
    code = finish_ladder(tuned_name, first, run, opts, args)
    show_both_verdicts(name, tuned_name, opts, args.margin, tuning)
    return code
