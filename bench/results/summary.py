"""A cell group's numbers over seeds: its final validation loss / PPL and the mean with a
Student-t confidence interval, ``mean ± t_{(1+c)/2, n-1} * s / sqrt(n)`` with the sample
standard deviation ``s`` (n-1 in the denominator). One seed: the mean, no interval; no scipy:
the mean and SD, no interval (``sci.NEEDS_SCIPY``)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from .records import Record
from .sci import scipy_stats

CONFIDENCE = 0.95
ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    """Mean over seeds with a Student-t confidence interval (``half_width`` None when n < 2)."""

    mean: float
    n: int
    std: float | None
    half_width: float | None
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def summarize(values, confidence: float = CONFIDENCE) -> Summary:
    """Mean and the two-sided Student-t interval (scipy.stats.t.interval around the mean)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize needs at least one value")
    n = len(vals)
    mean = statistics.fmean(vals)
    if n < 2:
        return Summary(mean, n, None, None, confidence)
    std = statistics.stdev(vals)
    sps = scipy_stats()
    if sps is None:
        return Summary(mean, n, std, None, confidence)
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, n, std, half, confidence)


def final_val_loss(record: Record) -> float | None:
    """The final validation loss of an ok record (None otherwise)."""
    if record.status != "ok":
        return None
    m = record.metrics
    if m.val_loss is not None:
        return float(m.val_loss)
    if m.val_ppl is not None and m.val_ppl > 0:
        return math.log(m.val_ppl)
    return None


def final_val_ppl(record: Record) -> float | None:
    if record.status != "ok":
        return None
    m = record.metrics
    if m.val_ppl is not None:
        return float(m.val_ppl)
    return math.exp(m.val_loss) if m.val_loss is not None else None
