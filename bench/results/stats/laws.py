"""Scaling laws with honest uncertainty, the harness's one fitter: L(x) = E + A x^-alpha per group (x =
non-embedding parameters N, or training compute C = 6 N D with D the tokens trained on), its
predictions, and where two groups' laws cross. Used by `bench ladder`, `bench table --ladder` and the
report (a ladder's rungs, or the preset scales of a matrix run at two or more scales).

Why this fitter (docs/scaling-laws.md has the numbers): on the committed ladder example its point
estimates equal scipy's curve_fit's to four digits (both are the least-squares optimum), but its
intervals come from the seeds themselves, so they cover the truth at about their nominal rate on
synthetic ladders (the covariance of curve_fit covered a 90% interval 82% of the time there), they
extend to predictions and crossovers, the pure power law with 2-3 rungs gets them too, and a form
that misses the rungs is flagged by a lack-of-fit test rather than silently widening them.

Method (docs/scaling-laws.md states it for users):

- Groups. An activation x scheme, split by any other swept axis; rungs (or scales) and seeds pool.
- Fit. Least squares over every (rung, seed) point. For a fixed alpha, E and A enter linearly, so the
  fit profiles them out in closed form (variable projection) over a fine log grid of alpha, refines the
  minimum by a parabola, and polishes the point estimate with scipy's least_squares. x is divided by
  its geometric mean first (conditioning; alpha and E do not change).
- Too few rungs. Three parameters need four distinct rungs to leave a residual; with two or three
  rungs the fit falls back to the pure power law L = A x^-alpha and says so.
- Intervals: a residual bootstrap over seeds. Each seed's deviation from its rung's mean (scaled by
  sqrt(n/(n-1)) for the lost degree of freedom) is resampled onto the fitted curve and the law refitted.
  Each replicate also scales its residuals by sqrt(dof / chi2_dof): with a few seeds the noise level
  itself is uncertain, and without this the 90% intervals covered the truth only ~85% of the time in
  the synthetic validation (tests/unit/results/stats/test_laws.py), with it ~90%. Percentile intervals.
- Predictions. The interval of the mean curve at x, and a prediction interval for one new seed there
  (the replicate's curve plus its own seed noise). Beyond the largest rung a prediction is an
  extrapolation; beyond MAX_EXTRAPOLATION times it, the table says so.
- Crossover. Where L_a(x) = L_b(x) within the range asked (by default the rungs up to
  MAX_EXTRAPOLATION past the largest); its interval from the replicates that cross, with the share of
  replicates that cross at all; "no crossover in range" when the fitted laws do not cross there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from ..curves import tokens_per_step
from ..records import Record
from .groups import final_val_loss

FULL = "L = E + A x^-alpha"
PURE = "L = A x^-alpha"
MIN_FULL_RUNGS = 4
MAX_EXTRAPOLATION = 10.0
CONFIDENCE = 0.90
RESAMPLES = 1000
ALPHA_GRID = np.geomspace(0.005, 3.0, 1500)
LACK_OF_FIT = 0.01  # the lack-of-fit test's level: below this p-value the fit says its form misses the rungs


@dataclass(frozen=True)
class Prediction:
    x: float
    loss: float
    mean_interval: tuple[float, float] | None  # of the fitted mean curve at x
    interval: tuple[float, float] | None  # prediction interval: one new seed at x
    factor: float  # x / the largest rung (> 1: an extrapolation)

    @property
    def beyond_limit(self) -> bool:
        return self.factor > MAX_EXTRAPOLATION


@dataclass
class LawFit:
    group: str
    x_name: str  # "N" (non-embedding parameters) or "C" (training FLOPs)
    form: str  # FULL or PURE
    A: float
    alpha: float
    E: float  # 0 for the pure form
    intervals: dict[str, tuple[float, float]]  # "A", "alpha" (and "E"): percentile intervals
    rungs: tuple[float, ...]
    n_points: int
    confidence: float
    note: str = ""
    boot: np.ndarray = field(default=None, repr=False)  # (B, 3): A, alpha, E per replicate
    boot_sigma: np.ndarray = field(default=None, repr=False)  # (B,): each replicate's seed noise

    def curve(self, x) -> np.ndarray:
        return self.E + self.A * np.asarray(x, float) ** (-self.alpha)

    def replicate_curves(self, x) -> np.ndarray:
        """(B, len(x)): every bootstrap replicate's curve."""
        x = np.atleast_1d(np.asarray(x, float))
        b = self.boot
        return b[:, 2:3] + b[:, 0:1] * x[None, :] ** (-b[:, 1:2])

    def predict(self, x: float, seed: int = 0) -> Prediction:
        factor = float(x) / max(self.rungs)
        loss = float(self.curve(x))
        if self.boot is None or not len(self.boot):
            return Prediction(float(x), loss, None, None, factor)
        q = quantiles(self.confidence)
        means = self.replicate_curves([x])[:, 0]
        noise = np.random.default_rng(seed).standard_normal(len(means)) * self.boot_sigma
        return Prediction(float(x), loss, tuple(np.quantile(means, q)), tuple(np.quantile(means + noise, q)), factor)


def quantiles(confidence: float) -> tuple[float, float]:
    return (1 - confidence) / 2, (1 + confidence) / 2


def profile_fit(u: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of Y[b] = E + A u^-alpha for every row b at once: (A, alpha, E), each (B,).
    For each alpha on ALPHA_GRID, E and A are the closed-form linear fit; the best alpha is refined by
    a parabola through its grid neighbours (in log alpha)."""
    X = u[None, :] ** (-ALPHA_GRID[:, None])  # (G, n)
    Xc = X - X.mean(1, keepdims=True)
    Ym = Y.mean(1, keepdims=True)
    Yc = Y - Ym
    sxy = Yc @ Xc.T  # (B, G)
    ss = (Yc ** 2).sum(1, keepdims=True) - sxy ** 2 / (Xc ** 2).sum(1)[None]
    i = np.clip(ss.argmin(1), 1, len(ALPHA_GRID) - 2)
    rows = np.arange(len(Y))
    fl, fc, fr = ss[rows, i - 1], ss[rows, i], ss[rows, i + 1]
    curv = fl - 2 * fc + fr
    step = np.where(curv > 0, 0.5 * (fl - fr) / np.where(curv > 0, curv, 1.0), 0.0)
    logs = np.log(ALPHA_GRID)
    alpha = np.exp(logs[i] + np.clip(step, -1, 1) * (logs[i + 1] - logs[i]))
    x = u[None, :] ** (-alpha[:, None])
    xc = x - x.mean(1, keepdims=True)
    A = (xc * Yc).sum(1) / (xc ** 2).sum(1)
    return A, alpha, Ym[:, 0] - A * x.mean(1)


def loglinear_fit(u: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least squares of log Y = log A - alpha log u for every row: (A, alpha, 0). Rows with a
    non-positive value give NaN."""
    lu = np.log(u)
    with np.errstate(invalid="ignore", divide="ignore"):
        ly = np.log(Y)
    luc = lu - lu.mean()
    slope = ((ly - ly.mean(1, keepdims=True)) * luc[None]).sum(1) / (luc ** 2).sum()
    return np.exp(ly.mean(1) - slope * lu.mean()), -slope, np.zeros(len(Y))


def _polish(u, y, A, alpha, E, full: bool):
    """The least-squares optimum by scipy from the profiled start (same minimum, to rounding)."""
    from scipy.optimize import least_squares
    if full:
        r = least_squares(lambda p: p[2] + p[0] * u ** (-p[1]) - y, [A, alpha, E], method="lm")
        return float(r.x[0]), float(r.x[1]), float(r.x[2])
    r = least_squares(lambda p: np.log(p[0]) - p[1] * np.log(u) - np.log(y), [A, alpha], method="lm")
    return float(r.x[0]), float(r.x[1]), 0.0


def _seed_residuals(xs: np.ndarray, ys: np.ndarray, fitted: np.ndarray, n_params: int) -> tuple[np.ndarray, int]:
    """Each seed's deviation from its rung's mean, scaled for the lost degree of freedom, and the
    residual degrees of freedom; with one seed per rung, the fit's residuals instead."""
    res, dof = [], 0
    for x in np.unique(xs):
        y = ys[xs == x]
        if len(y) > 1:
            res.append((y - y.mean()) * math.sqrt(len(y) / (len(y) - 1)))
            dof += len(y) - 1
    if res:
        return np.concatenate(res), dof
    dof = len(ys) - n_params
    return ((ys - fitted) * math.sqrt(len(ys) / dof) if dof > 0 else np.zeros(0)), dof


def lack_of_fit(xs: np.ndarray, ys: np.ndarray, fitted: np.ndarray, n_params: int) -> tuple[float, float] | None:
    """The classic lack-of-fit F test: (F, p). F is the rung means' mean square about the law over the
    seeds' own mean square within rungs (about 1 when the law's form is right); p is F's upper tail
    (scipy.stats.f). None without both degrees of freedom."""
    from scipy.stats import f as f_dist

    rungs = np.unique(xs)
    dof_lof, dof_pe = len(rungs) - n_params, len(ys) - len(rungs)
    if dof_lof <= 0 or dof_pe <= 0:
        return None
    ss_lof = ss_pe = 0.0
    for x in rungs:
        y, f = ys[xs == x], fitted[xs == x][0]
        ss_lof += len(y) * (y.mean() - f) ** 2
        ss_pe += float(((y - y.mean()) ** 2).sum())
    if ss_pe == 0:
        return float("inf"), 0.0
    ratio = (ss_lof / dof_lof) / (ss_pe / dof_pe)
    return ratio, float(f_dist.sf(ratio, dof_lof, dof_pe))


def fit_law(xs, ys, group: str = "", x_name: str = "N", confidence: float = CONFIDENCE,
            resamples: int = RESAMPLES, seed: int = 0) -> LawFit:
    """Fit one group's points (x, final loss), one per (rung, seed). Raises ValueError with one line
    when fewer than two distinct rungs (or a non-positive value) leave nothing to fit."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if len(xs) != len(ys) or not len(xs) or not np.all(np.isfinite(xs) & np.isfinite(ys)) or np.any(xs <= 0):
        raise ValueError(f"{group or 'group'}: a law needs finite points with x > 0")
    rungs = tuple(float(x) for x in np.unique(xs))
    if len(rungs) < 2:
        raise ValueError(f"{group or 'group'}: {len(rungs)} rung(s); a scaling law needs at least 2 distinct sizes")
    full = len(rungs) >= MIN_FULL_RUNGS
    if not full and np.any(ys <= 0):
        raise ValueError(f"{group or 'group'}: the pure power law needs positive losses")
    x0 = math.exp(float(np.mean(np.log(xs))))
    u = xs / x0
    fit = profile_fit if full else loglinear_fit
    A, alpha, E = (float(v[0]) for v in fit(u, ys[None]))
    A, alpha, E = _polish(u, ys, A, alpha, E, full)
    notes = [] if full else [f"{len(rungs)} rungs: pure power law (the form with a loss floor E needs "
                             f"{MIN_FULL_RUNGS})"]
    if full and not ALPHA_GRID[1] < alpha < ALPHA_GRID[-2]:
        notes.append(f"alpha at the edge of its search range [{ALPHA_GRID[0]}, {ALPHA_GRID[-1]}]: "
                     "these rungs do not pin the law down")
    if full and E < 0:
        notes.append("E < 0: no loss floor in this range")
    fitted = E + A * u ** (-alpha)
    res, dof = _seed_residuals(xs, ys, fitted, 3 if full else 2)
    if (lof := lack_of_fit(xs, ys, fitted, 3 if full else 2)) is not None and lof[1] < LACK_OF_FIT:
        notes.append(f"lack of fit (p {'< 0.001' if lof[1] < 1e-3 else f'= {lof[1]:.3f}'}): the rungs' means scatter "
                     f"about the law {math.sqrt(lof[0]):.1f}x more than seed noise explains; the intervals (seed noise "
                     "only) understate the uncertainty")
    law = LawFit(group, x_name, FULL if full else PURE, A * x0 ** alpha, alpha, E, {}, rungs, len(xs), confidence)
    if dof <= 0 or not len(res):
        law.note = "; ".join(notes + ["no residual degrees of freedom: no intervals"])
        return law
    rng = np.random.default_rng(seed)
    scale = np.sqrt(dof / rng.chisquare(dof, (resamples, 1)))
    Y = fitted[None, :] + scale * res[rng.integers(0, len(res), (resamples, len(ys)))]
    bA, balpha, bE = fit(u, Y)
    keep = np.isfinite(bA) & np.isfinite(balpha) & np.isfinite(bE)
    law.boot = np.stack([bA * x0 ** balpha, balpha, bE], 1)[keep]
    law.boot_sigma = (scale[:, 0] * float(np.sqrt(np.mean(res ** 2))))[keep]
    q = quantiles(confidence)
    names = ("A", "alpha", "E") if full else ("A", "alpha")
    law.intervals = {k: tuple(float(v) for v in np.quantile(law.boot[:, i], q)) for i, k in enumerate(names)}
    law.note = "; ".join(notes)
    return law


@dataclass(frozen=True)
class Crossover:
    a: str
    b: str
    x: float | None  # where the fitted laws cross (None: no crossover in range)
    interval: tuple[float, float] | None  # from the replicates that cross
    share: float  # the share of bootstrap replicate pairs that cross in range
    x_range: tuple[float, float]
    below: str | None = None  # the group with the lower loss just past the crossover
    crossings: int = 0  # how often the fitted laws cross in range (two laws E + A x^-alpha: at most 2)
    below_at_end: str | None = None  # the group with the lower loss at the range's end

    def describe(self) -> str:
        lo, hi = self.x_range
        if self.x is None:
            return f"no crossover in range {lo:.3g}..{hi:.3g} ({self.share:.0%} of replicates cross)"
        iv = f" [{self.interval[0]:.3g}, {self.interval[1]:.3g}]" if self.interval else ""
        again = f"; they cross again, {self.below_at_end} lower at {hi:.3g}" if self.crossings > 1 else ""
        return f"cross at {self.x:.3g}{iv}, {self.below} lower beyond ({self.share:.0%} of replicates cross){again}"


def _first_crossing(grid: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(B,) the first x on ``grid`` where each row of d (B, G) changes sign, interpolated in log x; NaN if none."""
    s = np.sign(d)
    change = (s[:, :-1] * s[:, 1:]) < 0
    has = change.any(1)
    j = np.where(has, change.argmax(1), 0)
    rows = np.arange(len(d))
    d0, d1 = d[rows, j], d[rows, j + 1]
    lg = np.log(grid)
    t = np.where(has & (d1 != d0), d0 / np.where(d1 != d0, d0 - d1, 1.0), 0.5)
    return np.where(has, np.exp(lg[j] + t * (lg[j + 1] - lg[j])), np.nan)


def crossover(a: LawFit, b: LawFit, x_range: tuple[float, float] | None = None, points: int = 2000) -> Crossover:
    """Where a's and b's laws cross within ``x_range`` (default: the smallest rung of either up to
    MAX_EXTRAPOLATION past the largest), with a percentile interval over paired replicates."""
    lo = min(min(a.rungs), min(b.rungs)) if x_range is None else x_range[0]
    hi = max(max(a.rungs), max(b.rungs)) * MAX_EXTRAPOLATION if x_range is None else x_range[1]
    grid = np.geomspace(lo, hi, points)
    d = (a.curve(grid) - b.curve(grid))[None]
    x = float(_first_crossing(grid, d)[0])
    share, interval = 0.0, None
    if a.boot is not None and b.boot is not None and len(a.boot) and len(b.boot):
        n = min(len(a.boot), len(b.boot))
        xb = _first_crossing(grid, a.replicate_curves(grid)[:n] - b.replicate_curves(grid)[:n])
        crossed = xb[np.isfinite(xb)]
        share = len(crossed) / n
        if len(crossed) and math.isfinite(x):
            interval = tuple(float(v) for v in np.quantile(crossed, quantiles(a.confidence)))
    if not math.isfinite(x):
        return Crossover(a.group, b.group, None, None, share, (lo, hi))
    past = min(hi, x * 1.01)  # just past the crossing
    below = a.group if a.curve(past) < b.curve(past) else b.group
    signs = np.sign(d[0])
    crossings = int(np.sum(signs[:-1] * signs[1:] < 0))
    at_end = a.group if d[0, -1] < 0 else b.group
    return Crossover(a.group, b.group, x, interval, share, (lo, hi), below, crossings, at_end)


# ---- a set of records as laws -------------------------------------------------------------------

STANDARD_AXES = ("scale", "activation", "norm", "seed", "N")  # pooled within a group, or its own columns


@dataclass
class Laws:
    """Every group's law in N (``fits``) and in C (``compute_fits``), every pair's crossover in N, the
    groups that could not be fitted (with why), and the size predictions are made at (None: none)."""

    fits: list[LawFit]
    crossovers: list[Crossover]
    skipped: list[str]
    predict: float | None
    compute_fits: list[LawFit] = field(default_factory=list)


def training_compute(record: Record) -> float | None:
    """C = 6 N D: N non-embedding parameters, D the tokens trained on (None when either is unknown)."""
    n = record.params.non_embedding if record.params else None
    m = record.metrics
    d = m.tokens or ((tokens_per_step(record) or 0) * (m.steps or 0))
    return 6.0 * n * d if n and d else None


def group_of(record: Record) -> str:
    """'activation:norm', plus ' [axis=value]' for every other axis the matrix swept."""
    extra = sorted((k, v) for k, v in (record.axes or {}).items() if k not in STANDARD_AXES)
    return f"{record.activation}:{record.norm}" + "".join(f" [{k}={v}]" for k, v in extra)


def law_points(records: list[Record], x: str = "N") -> dict[str, tuple[list[float], list[float]]]:
    """group -> (x, final loss) of every ok record (one per rung or scale, and seed); x = "N"
    (non-embedding parameters) or "C" (training compute 6 N D)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in records:
        loss = final_val_loss(r)
        if loss is None or r.params is None or not r.params.non_embedding:
            continue
        value = float(r.params.non_embedding) if x == "N" else training_compute(r)
        if value is None:
            continue
        xs, ys = out.setdefault(group_of(r), ([], []))
        xs.append(value)
        ys.append(loss)
    return out


def ladder_records(records: list[Record]) -> list[Record]:
    """The records of a `bench ladder` run: cells tagged with their rung's size (axis 'N')."""
    return [r for r in records if "N" in (r.axes or {})]


def law_records(records: list[Record]) -> list[Record]:
    """The records a scaling law is fitted to: a ladder's, else a matrix's when its finished cells span
    two or more scales ([] otherwise)."""
    ladder = ladder_records(records)
    if ladder:
        return ladder
    return records if len({r.scale for r in records if final_val_loss(r) is not None}) > 1 else []


def fit_laws(records: list[Record], predict: float | None = None, confidence: float = CONFIDENCE) -> Laws:
    """Each group's law in N and in C, with the crossovers of every pair in N (up to ``predict``, or
    MAX_EXTRAPOLATION past the largest rung)."""
    fits, skipped = [], []
    for group, (xs, ys) in law_points(records).items():
        try:
            fits.append(fit_law(xs, ys, group, "N", confidence))
        except ValueError as e:
            skipped.append(str(e))
    hi = max([max(f.rungs) for f in fits] + [predict or 0]) * (1 if predict else MAX_EXTRAPOLATION)
    crossings = [crossover(a, b, (min(min(a.rungs), min(b.rungs)), hi)) for a, b in combinations(fits, 2)]
    compute = []
    for group, (xs, ys) in law_points(records, "C").items():
        try:
            compute.append(fit_law(xs, ys, group, "C", confidence))
        except ValueError:
            pass  # said once already for N
    return Laws(fits, crossings, skipped, predict, compute)
