"""Learning-rate robustness from an LR sweep (`bench sweep`): per activation x scheme x scale, the
best LR, the stability frontier and Wortsman et al. (2023)'s LR sensitivity.

- l_0, the loss at initialization: the validation loss each cell measured before its first optimizer
  step (``metrics.init_val_loss``), the mean over the group's records that have it (the init does
  not depend on the LR). A freshly initialized LM scores above ln V (V = vocabulary size, the loss
  of the uniform prediction), by more the larger the model; records from before the measurement
  fall back to ln V, and the table says so.
- Per LR the value is the mean over its seeds of min(final validation loss, l_0), a diverged seed
  (non-finite loss) counting as l_0; failed / oom seeds are not training outcomes and are left out.
  A grid point none of whose seeds has an outcome is listed as failed, with the reason.
- Best LR: the grid point with the lowest value, l* = that value.
- An LR trains if every seed finished ok with a final loss below l_0. The stability frontier is the
  largest LR of the grid that trains; ``non_monotone`` says some smaller LR did not.
- LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
  instabilities", arXiv:2309.14322, Section 2.2): E over the LR grid of [min(l(eta), l_0) - l*],
  here the mean over the grid points of (value(eta) - l*). 0 = every LR as good as the best; at
  most l_0 - l* (every other LR no better than init). The paper's grid is log-spaced over orders of
  magnitude, so the expectation weights each decade equally; so does ours.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from ..records import Record
from .groups import final_val_loss, row_labels, run_order

LR_KEY = "train.lr"


def record_lr(r: Record) -> float | None:
    lr = (r.config.get("train") or {}).get("lr")
    return float(lr) if lr is not None else None


def init_loss(r: Record) -> float | None:
    """ln V: the loss of the uniform prediction, V from the record's data (or model) section."""
    v = r.data.get("vocab_size") or (r.config.get("model") or {}).get("vocab_size")
    return math.log(v) if v else None


def measured_init_loss(r: Record) -> float | None:
    """The validation loss the cell measured before its first optimizer step (None: not recorded)."""
    v = r.metrics.get("init_val_loss")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


MEASURED, UNIFORM = "measured", "ln V"


def loss_at_init(records: list[Record]) -> tuple[float | None, str | None]:
    """(l_0, its basis): the mean measured init loss of the records that have one, else ln V."""
    measured = [v for r in records if (v := measured_init_loss(r)) is not None]
    if measured:
        return statistics.fmean(measured), MEASURED
    uniform = [v for r in records if (v := init_loss(r)) is not None]
    return (uniform[0], UNIFORM) if uniform else (None, None)


def lr_labels(records: list[Record]) -> dict[str, str]:
    """Record id -> its row label without the LR: the activation plus any config field other than
    the seed and the LR that differs between cells of the same scale, activation and scheme."""
    return row_labels(records, ignore=("seed", LR_KEY))


@dataclass
class LRPoint:
    lr: float
    value: float | None  # mean over seeds of min(loss, l_0), diverged = l_0; None if no outcome
    losses: list[float | None]  # per seed final loss (None = diverged)
    statuses: list[str]
    trains: bool
    errors: list[str] = field(default_factory=list)  # each failed / oom seed's error, first line

    @property
    def failed(self) -> bool:
        """No seed has a training outcome (every one failed, ran out of memory or was interrupted)."""
        return bool(self.statuses) and not any(s in ("ok", "diverged") for s in self.statuses)

    def status_text(self) -> str:
        """'ok', 'diverged 1/2', or 'failed (oom 2/2): <error>'."""
        n = len(self.statuses)
        counts = {s: self.statuses.count(s) for s in dict.fromkeys(self.statuses)}
        text = ", ".join(f"{s} {c}/{n}" if c < n or s != "ok" else s for s, c in counts.items())
        if self.failed:
            text = f"failed ({text})" + (f": {self.errors[0]}" if self.errors else "")
        return text


@dataclass
class LRCurve:
    scale: str
    group: tuple[str, str]  # (row label, norm)
    l0: float | None
    points: list[LRPoint] = field(default_factory=list)  # ascending LR
    l0_basis: str | None = None  # MEASURED (the cells' init validation loss) or UNIFORM (ln V, a fallback)

    @property
    def best(self) -> LRPoint | None:
        pts = [p for p in self.points if p.value is not None]
        return min(pts, key=lambda p: p.value) if pts else None

    @property
    def frontier(self) -> float | None:
        """The largest LR that trains (None: none does)."""
        ok = [p.lr for p in self.points if p.trains]
        return max(ok) if ok else None

    @property
    def non_monotone(self) -> bool:
        f = self.frontier
        return f is not None and any(not p.trains and p.lr < f for p in self.points if p.value is not None)

    @property
    def sensitivity(self) -> float | None:
        """Mean over the grid of (value(eta) - l*), Wortsman et al. 2023."""
        vals = [p.value for p in self.points if p.value is not None]
        if len(vals) < 2:
            return None
        best = min(vals)
        return statistics.fmean(v - best for v in vals)

    @property
    def diverged(self) -> list[float]:
        return [p.lr for p in self.points if any(s == "diverged" for s in p.statuses)]

    @property
    def failed(self) -> list[LRPoint]:
        """Grid points with no training outcome: listed as failed, never a best LR or in the sensitivity."""
        return [p for p in self.points if p.failed]


def lr_curves(records) -> list[LRCurve]:
    """One LRCurve per (scale, activation label, norm) present at 2 or more learning rates."""
    labels = lr_labels(records)
    by: dict[tuple, dict[float, list[Record]]] = defaultdict(lambda: defaultdict(list))
    for r in run_order(records):
        lr = record_lr(r)
        if lr is not None:
            by[(r.scale, labels[r.id], r.norm)][lr].append(r)
    out = []
    for (scale, row, norm), per_lr in by.items():
        if len(per_lr) < 2:
            continue
        l0, basis = loss_at_init([r for recs in per_lr.values() for r in recs])
        curve = LRCurve(scale, (row, norm), l0, l0_basis=basis)
        for lr in sorted(per_lr):
            recs = [r for r in per_lr[lr] if r.status in ("ok", "diverged")]
            losses = [final_val_loss(r) if r.status == "ok" else None for r in recs]
            losses = [v if v is not None and math.isfinite(v) else None for v in losses]
            capped = [l0 if v is None else (min(v, l0) if l0 is not None else v) for v in losses]
            value = statistics.fmean(capped) if capped and all(c is not None for c in capped) else None
            trains = bool(recs) and all(r.status == "ok" for r in recs) and all(
                v is not None and (l0 is None or v < l0) for v in losses)
            errors = [first_line(r.error) or r.status for r in per_lr[lr] if r.status not in ("ok", "diverged")]
            curve.points.append(LRPoint(lr, value, losses, [r.status for r in per_lr[lr]], trains, errors))
        out.append(curve)
    return out


def first_line(text: str | None, width: int = 100) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= width else line[:width - 3] + "..."
