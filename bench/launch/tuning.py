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
from ..results.stats.laws import LawFit, fit_law
from ..results.stats.lr import lr_curves, lr_labels
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
    """Group -> its best LR on the tuning records (None: no grid point trained, or not tuned)."""
    labels = lr_labels(records)
    curves = {(c.scale, c.group[0], c.group[1]): c for c in lr_curves(records)}
    out: dict[str, float | None] = {}
    for t in tuning_cells(cells, tuning):
        key = group_of(t)
        if out.get(key) is not None or t.id not in labels:
            continue
        curve = curves.get((t.config.scale, labels[t.id], t.config.norm))
        best = curve.best if curve is not None else None
        grid = set(lr_grid(_center(t, cells), tuning.points, tuning.decades))
        out[key] = best.lr if best is not None and best.lr in grid else None
    return {group_of(c): out.get(group_of(c)) for c in cells}


def _center(t: Cell, cells: list[Cell]) -> float:
    """The recipe LR of the group a tuning cell belongs to."""
    return next(c.config.train.lr for c in cells if group_of(c) == group_of(t))


def tune(name: str, cells: list[Cell], opts, how: LaunchOptions, tuning: Tuning,
         console=None) -> tuple[Launched, list[Cell], dict]:
    """Train the tuning grid into OUT/<name>-tune/, then return (its launch, the command's cells at
    their groups' best LRs, group -> best LR). Cells whose group has no best LR are left out."""
    folder = name + SUFFIX
    launched = launch(folder, tuning_cells(cells, tuning), opts, how, console)
    if not launched.here or launched.unfinished:
        return launched, [], {}
    best = best_lrs(load_records(opts.out / folder)[0], cells, tuning)
    warn_edges(cells, best, tuning)
    tuned = [_at_lr(c, best[group_of(c)]) for c in cells if best.get(group_of(c)) is not None]
    return launched, tuned, best


def at_edge(cells: list[Cell], best: dict, tuning: Tuning) -> list[str]:
    """'activation/norm at scale' of every group whose best LR is the smallest or largest of its grid:
    its true best may lie outside it."""
    out = {}
    for c in cells:
        lr = best.get(group_of(c))
        grid = lr_grid(c.config.train.lr, tuning.points, tuning.decades)
        if lr is not None and lr in (grid[0], grid[-1]):
            out[group_of(c)] = f"{c.config.model.activation}/{c.config.norm} at {c.config.scale} ({lr:g})"
    return list(out.values())


def warn_edges(cells: list[Cell], best: dict, tuning: Tuning) -> None:
    from ..console import err

    edge = at_edge(cells, best, tuning)
    if edge:
        err.print(f"[yellow]warning:[/] the best LR is at the edge of the grid for {len(edge)} group(s): "
                  f"{', '.join(edge)}; the true best may lie beyond it: widen --tune-decades", highlight=False,
                  soft_wrap=True)


# ---- ladders: tune the smallest rungs, extrapolate the LR with a power law in N -------------------

@dataclass(frozen=True)
class LRLaw:
    """One ladder group's best LRs at the tuned rungs and the law fitted through them."""

    group: str
    tuned: tuple[tuple[float, float], ...]  # (N, best LR) at each tuned rung
    law: LawFit | None
    note: str = ""

    def lr(self, n: float) -> float | None:
        """The law's LR at N, 3 significant digits (None: no law)."""
        return None if self.law is None else float(f"{float(self.law.curve(n)):.3g}")


def ladder_group(cell: Cell) -> tuple:
    """A cell's group along a ladder: its axes without the rung (N) and the seed."""
    return tuple((k, v) for k, v in cell.axes if k not in ("N", "seed", "train.lr"))


def lr_laws(records, cells: list[Cell], sizes: dict[str, float], tuning: Tuning) -> dict[tuple, LRLaw]:
    """Ladder group -> the law lr*(N) = A N^-alpha (the harness's one fitter, stats/laws.py: a pure power
    law through 2-3 rungs, E + A N^-alpha from 4) through the best LRs of its tuned rungs; ``sizes``:
    the N axis value of a rung -> its non-embedding parameters."""
    best = best_lrs(records, cells, tuning)
    points: dict[tuple, dict[float, float | None]] = {}
    for c in cells:
        points.setdefault(ladder_group(c), {})[sizes[dict(c.axes)["N"]]] = best.get(group_of(c))
    out = {}
    for g, pts in points.items():
        name = " ".join(f"{v}" for k, v in g if k != "scale") or "all"
        missing = sorted(n for n, lr in pts.items() if lr is None)
        tuned = tuple(sorted((n, lr) for n, lr in pts.items() if lr is not None))
        if missing or len(tuned) < 2:
            out[g] = LRLaw(name, tuned, None, f"no law: {len(missing)} tuned rung(s) without a best LR on the grid"
                           if missing else "no law: fewer than 2 tuned rungs")
            continue
        try:
            law = fit_law([n for n, _ in tuned], [lr for _, lr in tuned], name, "N")
        except ValueError as e:
            out[g] = LRLaw(name, tuned, None, f"no law: {e}")
            continue
        out[g] = LRLaw(name, tuned, law, law.note)
    return out


def tune_ladder(name: str, cells: list[Cell], sizes: dict[str, float], rungs: int, opts, how: LaunchOptions,
                tuning: Tuning, console=None) -> tuple[Launched, list[Cell], dict]:
    """Tune the ``rungs`` smallest rungs' groups into OUT/<name>-tune/, fit each ladder group's LR law
    in N, and return (the tuning launch, every cell at its law's LR, group -> LRLaw). Groups without a
    law are left out."""
    small = sorted(set(sizes.values()))[:rungs]
    tuned_rungs = [c for c in cells if sizes[dict(c.axes)["N"]] in small]
    launched = launch(name + SUFFIX, tuning_cells(tuned_rungs, tuning), opts, how, console)
    if not launched.here or launched.unfinished:
        return launched, [], {}
    records = load_records(opts.out / (name + SUFFIX))[0]
    warn_edges(tuned_rungs, best_lrs(records, tuned_rungs, tuning), tuning)
    laws = lr_laws(records, tuned_rungs, sizes, tuning)
    out = []
    for c in cells:
        law = laws.get(ladder_group(c))
        lr = law.lr(sizes[dict(c.axes)["N"]]) if law is not None else None
        if lr is not None and lr > 0:
            out.append(_at_lr(c, lr))
    return launched, out, laws
