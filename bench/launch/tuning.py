"""Tuned comparisons, `--tune lr`: every arm gets the same tuning budget, then is compared on fresh
seeds at its own best learning rate.

- Budget. Each group (scale, activation, scheme and the cells' other settings) is trained over the
  same log-spaced LR grid (run/config/sweep.py's ``sweep_cells``: ``points`` LRs over ``decades``
  decades centred on its recipe LR) on the same tuning seeds (``TUNING_SEED`` and up), into
  OUT/<name>-tune/, through the one launcher.
- Best LR. The grid point with the lowest mean final validation loss over the tuning seeds, a
  diverged seed counted at the loss at initialization (stats/lr.py's ``lr_curves``, as `bench
  sweep` reads a sweep).
- Fresh seeds. The comparison cells are the command's own cells at their group's best LR, seeds 0,
  1, ... as without tuning: none of them was used to pick the LR, so the arm that was luckiest on
  its tuning seeds gains nothing from that luck (the winner's curse).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..results.records import load_records
from ..results.stats.lr import lr_curves
from ..run.config.matrix import Cell, with_seed
from ..run.config.sweep import lr_grid, sweep_cells
from .launcher import LaunchOptions, Launched, launch

TUNING_SEED = 1000  # tuning seeds are 1000, 1001, ...: never a comparison seed
SUFFIX = "-tune"


@dataclass(frozen=True)
class Tuning:
    points: int = 5
    decades: float = 1.0
    seeds: int = 1

    def __post_init__(self):
        if self.points < 2 or not self.decades > 0:
            raise ConfigError(f"--tune-points must be >= 2 and --tune-decades > 0, got {self.points} and "
                              f"{self.decades}")
        if not 1 <= self.seeds <= 100:
            raise ConfigError(f"--tune-seeds takes 1 to 100 tuning seeds, got {self.seeds}")

    def describe(self) -> str:
        return (f"{self.points} LRs over {self.decades:g} decade(s) around the recipe's, {self.seeds} tuning "
                f"seed(s) each")


def group_of(cell: Cell) -> str:
    """What a cell's group is: its config without the seed and the LR (their hash)."""
    return with_seed(_at_lr(cell, 1.0), 0).config.config_hash()


def _at_lr(cell: Cell, lr: float) -> Cell:
    (out,) = sweep_cells([cell], [lr])
    return out


def tuning_cells(cells: list[Cell], tuning: Tuning) -> list[Cell]:
    """Each group of ``cells`` once, at every LR of its grid and every tuning seed."""
    groups = {}
    for c in cells:
        groups.setdefault(group_of(c), c)
    seeded = [with_seed(c, TUNING_SEED + i) for c in groups.values() for i in range(tuning.seeds)]
    return sweep_cells(seeded, None, tuning.points, tuning.decades)


def best_lrs(records, cells: list[Cell], tuning: Tuning) -> dict[str, float | None]:
    """Group -> its best LR on the tuning records (None: no grid point trained)."""
    curves = {(c.scale, c.group[0], c.group[1]): c for c in lr_curves(records)}
    out = {}
    for c in cells:
        key = group_of(c)
        if key in out:
            continue
        cfg = c.config
        curve = curves.get((cfg.scale, cfg.model.activation, cfg.norm))
        grid = set(lr_grid(cfg.train.lr, tuning.points, tuning.decades))
        best = curve.best if curve is not None else None
        out[key] = best.lr if best is not None and best.lr in grid else None
    return out


def tune(name: str, cells: list[Cell], opts, how: LaunchOptions, tuning: Tuning,
         console=None) -> tuple[Launched, list[Cell], dict]:
    """Train the tuning grid into OUT/<name>-tune/, then return (its launch, the command's cells at
    their groups' best LRs, group -> best LR). Cells whose group has no best LR are left out."""
    folder = name + SUFFIX
    launched = launch(folder, tuning_cells(cells, tuning), opts, how, console)
    if not launched.here or launched.unfinished:
        return launched, [], {}
    best = best_lrs(load_records(opts.out / folder)[0], cells, tuning)
    tuned = [_at_lr(c, best[group_of(c)]) for c in cells if best.get(group_of(c)) is not None]
    return launched, tuned, best
