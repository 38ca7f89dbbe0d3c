"""`bench ladder`: a matrix's activations x schemes x seeds over a ladder of model sizes (bench/run/config/ladder.py),
trained by the ordinary runner (claims, resume, --workers, --slurm), then fitted as scaling laws with intervals,
predictions and crossovers (bench/results/stats/laws.py)."""

from __future__ import annotations

from .common import add_filters, add_launch_options, add_margin, add_overrides, add_run_options, add_until_decided, \
    cells_from, finish_run, launch_options, run_name, run_options, sequential_design

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


def main(args) -> int:
    from ..atomic import atomic_write
    from ..console import err, out
    from ..launch.launcher import launch
    from ..launch.rounds import undecided_comparisons, until_decided
    from ..results.tables.leaderboard import check_margin
    from ..results.stats.laws import fit_laws
    from ..results.tables.comparisons import law_tables, laws_markdown, print_laws
    from ..results.records import load_records

    opts = run_options(args)
    how = launch_options(args)
    check_margin(args.margin)
    matrix, rungs, cells = ladder_cells(args)
    args.name = args.name or f"{matrix.name}-ladder"
    name = run_name(args, matrix)
    show_rungs(rungs, cells, out)
    if len(rungs) < args.rungs:
        err.print(f"[yellow]warning:[/] {args.rungs - len(rungs)} rung(s) rounded to the same shape as another and "
                  f"were dropped: widen --params or lower --head-dim/--aspect", highlight=False)
    design = sequential_design(args, opts.out / name, len({c.config.seed for c in cells}))
    if design is not None:  # every rung's comparisons get seeds until decided, each its own
        launched, cells = until_decided(name, cells, opts, how, design, undecided_comparisons(design))
    else:
        launched = launch(name, cells, opts, how)
    if not launched.here:
        return 0
    code = max(finish_run(name, cells, launched.records, opts, args.margin), launched.code)
    records, _ = load_records(opts.out / name)
    laws = fit_laws(records, args.predict)
    tables = law_tables(laws)
    print_laws(tables, out if code == 0 else err, name)
    if laws.fits:  # the same tables beside the records, as `bench table DIR --ladder --format md` prints them
        atomic_write(opts.out / name / "ladder.md", laws_markdown(tables))
    return code
