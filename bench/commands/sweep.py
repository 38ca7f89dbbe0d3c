"""`bench sweep`: a matrix crossed with a learning-rate grid, trained by the ordinary runner (here,
--workers or --slurm); the grid and its cells are bench.run.config.sweep's."""

from __future__ import annotations

from .common import add_filters, add_launch_options, add_overrides, add_run_options, cells_from, launch_options, \
    report_problems, run_name, run_options

HELP = "train a matrix over a learning-rate grid: best LR, stability frontier, LR sensitivity"


def add_parser(sub):
    p = sub.add_parser(
        "sweep", help=HELP,
        description="Cross every cell of a matrix with a learning-rate grid and train them with the ordinary "
                    "runner (results in OUT/<matrix>-lr/, resumable like `bench run`), then print per "
                    "activation x scheme the best LR, the largest LR that trains without diverging, and "
                    "Wortsman et al. (2023)'s LR sensitivity. Diverged cells are results here, not failures.")
    add_filters(p)
    p.add_argument("--lr-grid", default=None, metavar="LR,LR,...",
                   help="explicit learning rates (replaces the default grid)")
    p.add_argument("--lr-points", type=int, default=7, help="grid points when no --lr-grid is given")
    p.add_argument("--lr-decades", type=float, default=2.0,
                   help="decades the default grid spans, centred on each cell's own train.lr")
    add_run_options(p)
    add_launch_options(p)
    add_overrides(p)
    return p


def main(args) -> int:
    from ..console import err, out
    from ..launch.launcher import launch
    from ..results import render
    from ..results.records import load_records
    from ..results.stats.lr import lr_curves
    from ..results.tables.comparisons import lr_tables
    from ..run.config.sweep import SUFFIX, parse_grid, sweep_cells

    opts = run_options(args)
    how = launch_options(args)
    matrix, cells = cells_from(args)
    grid = parse_grid(args.lr_grid) if args.lr_grid else None
    cells = sweep_cells(cells, grid, args.lr_points, args.lr_decades)
    name = run_name(args, matrix) + SUFFIX
    lrs = sorted({c.config.train.lr for c in cells})
    out.print(f"{name}: {len(cells)} cells = {len(cells) // max(1, len(lrs))} x {len(lrs)} learning rates "
              f"({', '.join(f'{v:.3g}' for v in lrs)})", highlight=False)
    launched = launch(name, cells, opts, how)
    if not launched.here:
        return 0
    ran = list(launched.records)
    records, problems = load_records(opts.out / name)  # the whole sweep folder: earlier grids count too
    report_problems(problems)
    ids = {c.id for c in cells}
    for table in lr_tables(lr_curves([r for r in records if r.id in ids] or ran)) or ():
        render.rich(out, table, render.titled(name, table.title))
    out.print(f"`bench report {opts.out / name}` draws final loss against LR per cell.", highlight=False)
    bad = [r.id for r in ran if r.status not in ("ok", "diverged")]  # a diverged LR is a result here
    if bad:
        err.print(f"[red]{len(bad)} cell(s) failed:[/] {', '.join(bad)}")
    return max(1 if bad else 0, launched.code)

