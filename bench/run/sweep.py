"""`bench sweep`: a matrix crossed with a learning-rate grid, trained by the ordinary runner.

Every cell of the matrix (after the command line's filters and overrides) is repeated at each LR of
the grid, as cells of a matrix named ``<matrix>-lr`` with a ``train.lr`` axis: their ids carry the
LR (``...-lr0.003-s0-<hash>``), so resume, claims and parallel workers apply exactly as to
`bench run`, and the sweep's results never mix with the matrix's own leaderboard.

Default grid: 7 points log-spaced over 2 decades centred on each cell's own LR (the matrix's LR):
lr x 10^(-1, -2/3, ..., 1), rounded to 3 significant digits.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .matrix import Cell, cell_id

SUFFIX = "-lr"


def lr_grid(center: float, points: int = 7, decades: float = 2.0) -> list[float]:
    """``points`` log-spaced LRs over ``decades`` decades centred on ``center`` (3 significant digits)."""
    if not center > 0:
        raise ConfigError(f"the LR grid needs a positive centre LR, got {center}")
    if points < 2 or decades <= 0:
        raise ConfigError(f"--lr-points must be >= 2 and --lr-decades > 0, got {points} and {decades}")
    return sorted({float(f"{center * 10 ** e:.3g}") for e in np.linspace(-decades / 2, decades / 2, points)})


def parse_grid(text: str) -> list[float]:
    """'1e-3,3e-3,1e-2' -> sorted positive floats; a ConfigError naming the bad value otherwise."""
    out = []
    for v in (t.strip() for t in text.split(",") if t.strip()):
        try:
            lr = float(v)
        except ValueError:
            raise ConfigError(f"--lr-grid takes comma-separated positive numbers, got {v!r}") from None
        if not lr > 0:
            raise ConfigError(f"--lr-grid takes comma-separated positive numbers, got {v!r}")
        out.append(lr)
    if len(set(out)) < 2:
        raise ConfigError(f"--lr-grid needs at least 2 distinct learning rates, got {text!r}")
    return sorted(set(out))


def sweep_cells(cells: list[Cell], grid: list[float] | None = None, points: int = 7,
                decades: float = 2.0) -> list[Cell]:
    """Each cell at every LR of ``grid`` (absolute) or, without one, of its own default grid."""
    out, seen = [], set()
    for cell in cells:
        for lr in grid or lr_grid(cell.config.train.lr, points, decades):
            cfg = copy.deepcopy(cell.config)
            cfg.train.lr = lr
            axes = tuple((k, v) for k, v in cell.axes if k != "train.lr")
            combo = dict(axes)
            # the LR goes just before the seed in the id: ...-<norm>-lr0.003-s0-<hash>
            seed = combo.pop("seed", None)
            combo["train.lr"] = lr
            if seed is not None:
                combo["seed"] = seed
            cid = cell_id(cfg, combo)
            if cid not in seen:
                seen.add(cid)
                out.append(Cell(cid, cfg, axes + (("train.lr", lr),)))
    return out


def cmd_sweep(args) -> int:
    from rich.table import Table

    from ..cli import cells_from, console, err_console, report_problems, split_list
    from ..results.lr import LR_COLUMNS, LR_LEGEND
    from ..results.compare_tables import lr_table
    from ..results.records import load_records
    from .runner import RunOptions, run_matrix

    matrix, cells = cells_from(args)
    grid = parse_grid(args.lr_grid) if args.lr_grid else None
    cells = sweep_cells(cells, grid, args.lr_points, args.lr_decades)
    name = matrix.name + SUFFIX
    opts = RunOptions(out=Path(args.out), force=args.force, loggers=tuple(split_list(args.loggers) or ["csv"]),
                      quiet=args.quiet, ckpt_every=args.ckpt_every, wait=args.wait, stale_after=args.stale_after)
    lrs = sorted({c.config.train.lr for c in cells})
    console.print(f"{name}: {len(cells)} cells = {len(cells) // max(1, len(lrs))} x {len(lrs)} learning rates "
                  f"({', '.join(f'{v:.3g}' for v in lrs)})", highlight=False)
    ran = run_matrix(name, cells, opts, console)
    records, problems = load_records(opts.out / name)  # the whole sweep folder: earlier grids count too
    report_problems(problems)
    ids = {c.id for c in cells}
    rows, _ = lr_table([r for r in records if r.id in ids] or ran)
    t = Table(title=f"{name}: learning-rate robustness", title_justify="left")
    for c in LR_COLUMNS:
        t.add_column(c, justify="left" if c in ("scale", "activation", "norm", "diverged_at", "note") else "right")
    for row in rows:
        t.add_row(*row)
    console.print(t)
    console.print(LR_LEGEND, highlight=False, markup=False)
    console.print(f"`bench report {opts.out / name}` draws final loss against LR per cell.", highlight=False)
    bad = [r.id for r in ran if r.status not in ("ok", "diverged")]  # a diverged LR is a result here
    if bad:
        err_console.print(f"[red]{len(bad)} cell(s) failed:[/] {', '.join(bad)}")
    return 1 if bad else 0


def add_sweep_parser(sub) -> argparse.ArgumentParser:
    """Add `bench sweep` to the CLI's subparsers."""
    from ..cli import add_filters, add_overrides

    p = sub.add_parser(
        "sweep", help="train a matrix over a learning-rate grid: best LR, stability frontier, LR sensitivity",
        description="Cross every cell of a matrix with a learning-rate grid and train them with the ordinary "
                    "runner (results in OUT/<matrix>-lr/, resumable like `bench run`), then print per "
                    "activation x scheme the best LR, the largest LR that trains without diverging, and "
                    "Wortsman et al. (2023)'s LR sensitivity. Diverged cells are results here, not failures.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_filters(p)
    p.add_argument("--lr-grid", default=None, metavar="LR,LR,...",
                   help="explicit learning rates (replaces the default grid)")
    p.add_argument("--lr-points", type=int, default=7, help="grid points when no --lr-grid is given")
    p.add_argument("--lr-decades", type=float, default=2.0,
                   help="decades the default grid spans, centred on each cell's own train.lr")
    p.add_argument("--out", default="results", help="results folder: writes OUT/<matrix>-lr/<cell id>/")
    p.add_argument("--force", action="store_true", help="retrain cells that already have a finished record")
    p.add_argument("--loggers", default="csv", help="comma-separated Lightning loggers: csv, tensorboard, wandb")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--ckpt-every", type=int, default=100,
                   help="save a resumable checkpoint every N optimizer steps (0 = never)")
    p.add_argument("--wait", action="store_true",
                   help="wait for cells another run is training (claimed in their folder) instead of skipping them")
    p.add_argument("--stale-after", type=float, default=300.0, metavar="SECONDS",
                   help="a claim whose heartbeat is older than this is taken over (its run died)")
    add_overrides(p)
    p.set_defaults(func=cmd_sweep)
    return p
