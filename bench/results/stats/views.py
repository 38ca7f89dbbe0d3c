"""Equal-steps, equal-compute and equal-time views: every cell's validation loss at one matched
budget of optimizer steps, training FLOPs or training seconds, read off its validation curve.

- x of a validation point: steps = optimizer steps done; flops = steps x grad_accum x
  ``metrics.flops_per_batch`` (forward + backward FLOPs of one micro-batch, counted by PyTorch's
  FlopCounterMode when the cell ran); seconds = the ``time/train_seconds`` column logged beside each
  validation (training time only: validation excluded), or, for curves without it, the estimate
  ``metrics.train_seconds x step / steps`` (constant step time assumed; marked as estimated).
- Loss at a budget B: exact at a validation point; between two points x0 < B < x1 it is
  interpolated linearly in log x: ``L(B) = L0 + (L1 - L0) * ln(B / x0) / ln(x1 / x0)`` (loss curves
  are closer to straight lines in log x than in x). Before a cell's first validation point or past
  its last one there is no value: nothing is extrapolated.
- Default budget per scale and axis: the largest budget every ok cell of that scale reached (the
  minimum over cells of their last point), so the most expensive cell is read at its final
  validation and no cell is extrapolated.
- A group (seed repeats of one cell) scores the mean over its seeds that reached the budget; within
  a scale, groups are ranked by that mean (1 = lowest loss).

Caveat: a cell read before its end is mid-schedule (its cosine has not annealed), so the equal-time
and equal-compute views answer "which run was ahead at this budget", not "which would win if
trained for exactly this budget" (that needs runs whose max_steps is the budget).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from ..curves import steps_done, train_seconds
from ..records import Record
from .groups import group_records

AXES = ("steps", "flops", "seconds")
AXIS_TITLES = {"steps": "equal steps", "flops": "equal compute (FLOPs)", "seconds": "equal time (training seconds)"}


def parse_budget(text: str) -> tuple[str, float | None]:
    """'flops=1e12' | 'seconds=30' | 'steps=200' -> (axis, value); 'flops' alone -> (axis, None),
    the default budget. Raises ValueError with the valid forms."""
    axis, _, value = str(text).partition("=")
    axis = axis.strip()
    if axis not in AXES:
        raise ValueError(f"--at takes flops=X, seconds=Y or steps=Z (or the axis alone for the default budget), "
                         f"got {text!r}; valid axes: {', '.join(AXES)}")
    if not value.strip():
        return axis, None
    try:
        v = float(value)
    except ValueError:
        raise ValueError(f"--at {axis}= needs a number, got {value!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"--at {axis}= needs a positive number, got {value!r}")
    return axis, v


@dataclass
class CellCurve:
    """One cell's validation points: x on every axis (None where unknown) and the loss."""

    id: str
    steps: list[float]
    flops: list[float] | None
    seconds: list[float] | None
    loss: list[float]
    seconds_estimated: bool = False

    def xs(self, axis: str) -> list[float] | None:
        return getattr(self, axis)


def cell_curve(record: Record, curve: dict | None, column: str = "val/loss") -> CellCurve | None:
    """The validation points of an ok record, from its parsed metrics.csv (None without points)."""
    if record.status != "ok" or not curve or not curve.get(column):
        return None
    m = record.metrics
    total = m.steps
    by_step: dict[int, tuple[int, float]] = {}
    for logged, loss in curve[column]:  # a repeated step (validation after fit) keeps the last value
        by_step[steps_done(logged, total)] = (logged, loss)
    if not by_step:
        return None
    steps = sorted(by_step)
    loss = [by_step[s][1] for s in steps]
    accum = int((record.config.get("train") or {}).get("grad_accum", 1) or 1)
    fpb = m.flops_per_batch
    flops = [float(s) * accum * float(fpb) for s in steps] if fpb else None
    stamps = train_seconds(curve)
    seconds, estimated = [stamps.get(by_step[s][0]) for s in steps], False
    if not stamps or any(v is None for v in seconds):
        seconds = None
    if seconds is None and m.train_seconds and total:
        seconds, estimated = [float(m.train_seconds) * s / total for s in steps], True
    return CellCurve(record.id, [float(s) for s in steps], flops, seconds, loss, estimated)


def interpolate(xs: list[float], ys: list[float], x: float) -> float | None:
    """y at x, linear in log x between the bracketing points; None outside [xs[0], xs[-1]]."""
    if not xs or x < xs[0] * (1 - 1e-9) or x > xs[-1] * (1 + 1e-9):
        return None
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            if x1 == x0 or x <= 0 or x0 <= 0:
                return y1 if x >= x1 else y0
            return y0 + (y1 - y0) * math.log(x / x0) / math.log(x1 / x0)
    return ys[0] if abs(x - xs[0]) <= xs[0] * 1e-9 else ys[-1]


@dataclass
class GroupAt:
    """A group's loss at one budget: mean over the seeds that reached it."""

    scale: str
    group: tuple[str, str]  # (row label, norm)
    loss: float | None
    n: int  # seeds that reached the budget
    n_total: int  # ok seeds with a curve
    rank: int | None = None
    estimated: bool = False  # some seconds were estimated, not logged


@dataclass
class View:
    axis: str
    budgets: dict[str, float]  # scale -> the budget used
    groups: list[GroupAt] = field(default_factory=list)
    default: bool = True  # budgets were chosen automatically

    def ranking(self, scale: str) -> list[tuple[str, str]]:
        return [g.group for g in sorted((g for g in self.groups if g.scale == scale and g.rank is not None),
                                        key=lambda g: g.rank)]


def curves_by_group(records, curves: dict) -> dict[tuple[str, str, str], list[CellCurve]]:
    """(scale, row label, norm) -> the validation curves of its ok cells."""
    out = {}
    for key, recs in group_records(records).items():
        out[key] = [c for r in recs if (c := cell_curve(r, curves.get(r.id))) is not None]
    return out


def default_budget(cells: list[CellCurve], axis: str) -> float | None:
    """The largest budget every cell reached: the minimum over cells of their last x."""
    ends = [xs[-1] for c in cells if (xs := c.xs(axis))]
    return min(ends) if ends and len(ends) == len(cells) else None


def ranges(records, curves: dict) -> dict[str, tuple[float, float]]:
    """axis -> (smallest first point, largest last point) over every ok cell's validation curve:
    the budgets a view can be read at."""
    out = {}
    cells = [c for cs in curves_by_group(records, curves).values() for c in cs]
    for axis in AXES:
        xs = [c.xs(axis) for c in cells if c.xs(axis)]
        if xs:
            out[axis] = (min(x[0] for x in xs), max(x[-1] for x in xs))
    return out


def check_budget(records, curves: dict, at: tuple[str, float | None] | None) -> None:
    """Refuse, in one line naming every view's range, a budget no cell's curve reaches."""
    if not at or at[1] is None or not curves:
        return
    axis, budget = at
    span = ranges(records, curves)
    lo, hi = span.get(axis, (None, None))
    if lo is not None and lo * (1 - 1e-9) <= budget <= hi * (1 + 1e-9):
        return
    where = "; ".join(f"{a} {budget_text(a, x0)} to {budget_text(a, x1)}" for a, (x0, x1) in span.items())
    raise ValueError(f"--at {axis}={budget:g} is outside every cell's validation curve; the views can be read at: "
                     f"{where or 'nothing (no validation curve)'}")


def reached_note(v: View) -> str | None:
    """Which groups reached the view's budget, and which did not (None when every group did)."""
    short = [g for g in v.groups if g.n_total and g.n < g.n_total]
    if not short:
        return None
    done = sum(1 for g in v.groups if g.n_total and g.n == g.n_total)
    names = ", ".join(f"{g.group[0]} / {g.group[1]} ({g.scale}: {g.n}/{g.n_total} seeds)" for g in short)
    return (f"At {AXIS_TITLES[v.axis]}: {done} group(s) reached the budget with every seed; not reached by "
            f"{names}. A group that did not reach it is not ranked there, and no other group's rank change "
            "is counted against it.")


def view(records, curves: dict, axis: str, budget: float | None = None) -> View:
    """Every group's mean validation loss at the budget on ``axis`` (default: per scale, the largest
    budget all its cells reached), ranked within each scale."""
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; valid: {', '.join(AXES)}")
    grouped = curves_by_group(records, curves)
    scales = list(dict.fromkeys(k[0] for k in grouped))
    budgets = {}
    for scale in scales:
        cells = [c for k, cs in grouped.items() if k[0] == scale for c in cs]
        b = budget if budget is not None else default_budget(cells, axis)
        if b is not None:
            budgets[scale] = b
    out = View(axis, budgets, default=budget is None)
    for (scale, row, norm), cells in grouped.items():
        b = budgets.get(scale)
        vals = [v for c in cells
                if b is not None and (xs := c.xs(axis)) and (v := interpolate(xs, c.loss, b)) is not None]
        est = axis == "seconds" and any(c.seconds_estimated for c in cells)
        out.groups.append(GroupAt(scale, (row, norm), statistics.fmean(vals) if vals else None, len(vals), len(cells),
                                  estimated=est))
    for scale in scales:
        ranked = sorted((g for g in out.groups if g.scale == scale and g.loss is not None), key=lambda g: g.loss)
        for i, g in enumerate(ranked, 1):
            g.rank = i
    return out


def three_views(records, curves: dict, budgets: dict[str, float | None] | None = None) -> dict[str, View]:
    """axis -> View for steps, flops and seconds (``budgets``: axis -> value, None = default)."""
    budgets = budgets or {}
    return {axis: view(records, curves, axis, budgets.get(axis)) for axis in AXES}


@dataclass
class Disagreement:
    scale: str
    ranks: dict[tuple[str, str], dict[str, int | None]]  # group -> axis -> rank
    tau: dict[tuple[str, str], float | None]  # (axis a, axis b) -> Kendall's tau of the two rankings
    winners: dict[str, tuple[str, str] | None]  # axis -> the rank-1 group

    @property
    def changed(self) -> list[tuple[str, str]]:
        """Groups whose place differs between two views that both rank them, counted among the
        groups both rank: a group dropping out of a view (budget not reached) moves nobody."""
        axes = list(next(iter(self.ranks.values()), {}))
        out = []
        for g, r in self.ranks.items():
            for i, a in enumerate(axes):
                for b in axes[i + 1:]:
                    if r[a] is None or r[b] is None:
                        continue
                    both = [h for h, q in self.ranks.items() if q[a] is not None and q[b] is not None]
                    if sorted(both, key=lambda h: self.ranks[h][a]).index(g) != \
                            sorted(both, key=lambda h: self.ranks[h][b]).index(g):
                        out.append(g)
                        break
                else:
                    continue
                break
        return out

    @property
    def dropped(self) -> dict[tuple[str, str], list[str]]:
        """Group -> the views that rank some groups but not it (it did not reach their budget)."""
        axes = list(next(iter(self.ranks.values()), {}))
        ranked = {a for a in axes if any(r[a] is not None for r in self.ranks.values())}
        return {g: miss for g, r in self.ranks.items() if (miss := [a for a in axes if a in ranked and r[a] is None])}


def disagreements(views: dict[str, View]) -> list[Disagreement]:
    """Per scale: each group's rank in every view, Kendall's tau between each pair of views (over
    the groups both rank), and each view's winner."""
    from scipy.stats import kendalltau

    scales = list(dict.fromkeys(g.scale for v in views.values() for g in v.groups))
    out = []
    for scale in scales:
        groups = list(dict.fromkeys(g.group for v in views.values() for g in v.groups if g.scale == scale))
        ranks = {g: {a: next((x.rank for x in v.groups if x.scale == scale and x.group == g), None)
                     for a, v in views.items()} for g in groups}
        taus = {}
        axes = list(views)
        for i, a in enumerate(axes):
            for b in axes[i + 1:]:
                both = [(r[a], r[b]) for r in ranks.values() if r[a] is not None and r[b] is not None]
                if len(both) >= 2:
                    tau = kendalltau([p[0] for p in both], [p[1] for p in both]).statistic
                    taus[(a, b)] = None if tau is None or math.isnan(tau) else float(tau)
                else:
                    taus[(a, b)] = None
        winners = {a: next((g for g, r in ranks.items() if r[a] == 1), None) for a in axes}
        out.append(Disagreement(scale, ranks, taus, winners))
    return out


def budget_text(axis: str, value: float) -> str:
    if axis == "steps":
        return f"{value:,.0f} steps"
    if axis == "flops":
        return f"{value:.3g} FLOPs"
    return f"{value:,.1f} s"
