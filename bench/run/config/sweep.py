"""`bench sweep`: a matrix crossed with a learning-rate grid, trained by the ordinary runner.

Every cell of the matrix (after the command line's filters and overrides) is repeated at each LR of
the grid, as cells of a matrix named ``<matrix>-lr`` with a ``train.lr`` axis: their ids carry the
LR (``...-lr0.003-s0-<hash>``), so resume, claims and parallel workers apply exactly as to
`bench run`, and the sweep's results never mix with the matrix's own leaderboard.

Default grid: 7 points log-spaced over 2 decades centred on each cell's own LR (the matrix's LR):
lr x 10^(-1, -2/3, ..., 1), rounded to 3 significant digits.
"""

from __future__ import annotations

import copy

import numpy as np

from ...errors import ConfigError
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
