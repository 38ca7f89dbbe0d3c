"""Scaling-law fits across scales. Per (activation, norm) group, every ok seed is one point
(N = non-embedding parameters, or compute C = 6 N D with D the training tokens). With >= 4
distinct scales ``L = A * x^(-alpha) + E`` by nonlinear least squares (scipy.optimize.curve_fit),
otherwise the pure power law ``log L = log A - alpha log x`` by ordinary least squares on the logs
(scipy.stats.linregress); standard errors from the fit (none when it has no residual degrees of
freedom). Without scipy there are no fits (``sci.NEEDS_SCIPY``)."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from .curves import tokens_per_step
from .grouping import row_labels
from .records import Record
from .sci import have_scipy
from .summary import final_val_loss

SATURATING = "L = A * x^(-alpha) + E"
POWER_LAW = "log L = log A - alpha log x"


@dataclass
class ScalingFit:
    group: tuple[str, str]  # (activation label, norm)
    x: str  # "N" (non-embedding parameters) or "C" (compute 6 N D)
    form: str  # SATURATING or POWER_LAW
    n_points: int
    n_scales: int
    A: float
    alpha: float
    alpha_se: float | None
    E: float | None = None  # only in the saturating form
    E_se: float | None = None
    note: str = ""
    xs: list[float] = field(default_factory=list, repr=False)
    ys: list[float] = field(default_factory=list, repr=False)

    def predict(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return self.A * x ** (-self.alpha) + (self.E or 0.0)


def fit_power_law(xs, ys) -> tuple[float, float, float | None]:
    """OLS of log y = log A - alpha log x: (A, alpha, standard error of alpha or None with < 3
    points)."""
    from scipy.stats import linregress

    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise ValueError("a power-law fit needs at least 2 distinct x values")
    with np.errstate(all="ignore"):
        fit = linregress(lx, ly)
    se = float(fit.stderr) if len(lx) > 2 else None
    return math.exp(float(fit.intercept)), -float(fit.slope), se


def fit_saturating(xs, ys) -> tuple[float, float, float, float | None, float | None]:
    """Nonlinear least squares of y = A x^-alpha + E: (A, alpha, E, se(alpha), se(E)). x is scaled
    by its geometric mean for conditioning (alpha and E are unchanged by that). Raises RuntimeError
    if the fit does not converge."""
    from scipy import optimize

    x, y = np.asarray(xs, float), np.asarray(ys, float)
    x0 = float(np.exp(np.mean(np.log(x))))
    u = x / x0
    e0 = 0.5 * float(np.min(y))
    try:
        a0, alpha0, _ = fit_power_law(u, y - e0)
    except ValueError:
        a0, alpha0 = float(np.max(y) - e0), 0.3
    f = lambda uu, a, alpha, e: a * uu ** (-alpha) + e  # noqa: E731
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)  # singular covariance: se = None below
        popt, pcov = optimize.curve_fit(f, u, y, p0=(a0, alpha0, e0), maxfev=20000)
    a, alpha, e = (float(v) for v in popt)
    if not all(map(math.isfinite, (a, alpha, e))):
        raise RuntimeError("the saturating fit did not converge")
    se_alpha = se_e = None
    if len(x) > 3 and np.all(np.isfinite(pcov)):
        se_alpha, se_e = math.sqrt(max(0.0, pcov[1, 1])), math.sqrt(max(0.0, pcov[2, 2]))
    return a * x0 ** alpha, alpha, e, se_alpha, se_e


def scaling_points(records: list[Record]) -> dict[tuple[str, str], list[tuple[str, float, float, float]]]:
    """(activation label, norm) -> [(scale, N non-embedding, C = 6 N D, final val loss)] per ok record."""
    labels = row_labels(records)
    out: dict[tuple[str, str], list] = defaultdict(list)
    for r in records:
        loss = final_val_loss(r)
        n = r.params.non_embedding if r.params else None
        if loss is None or not n:
            continue
        m = r.metrics
        d = m.tokens or ((tokens_per_step(r) or 0) * (m.steps or 0))
        out[(labels[r.id], r.norm)].append((r.scale, float(n), 6.0 * n * d if d else float("nan"), loss))
    return dict(out)


def _fit(group, xname: str, xs, ys, n_scales: int, min_saturating_scales: int) -> ScalingFit:
    note = ""
    if n_scales >= min_saturating_scales:
        try:
            a, alpha, e, se, e_se = fit_saturating(xs, ys)
            notes = (["no residual dof or singular fit: no standard error"] if se is None else []) + \
                (["E < 0: no loss floor in this range"] if e < 0 else [])
            return ScalingFit(group, xname, SATURATING, len(xs), n_scales, a, alpha, se, e, e_se,
                              "; ".join(notes), xs, ys)
        except (RuntimeError, ValueError) as exc:
            note = f"saturating fit failed ({exc}); "
    a, alpha, se = fit_power_law(xs, ys)
    if se is None:
        note += "2 points: exact fit, no standard error"
    elif n_scales < min_saturating_scales:
        note += f"{n_scales} scales: pure power law (the saturating form needs {min_saturating_scales})"
    return ScalingFit(group, xname, POWER_LAW, len(xs), n_scales, a, alpha, se, None, None, note.rstrip("; "), xs, ys)


def scaling_fits(records: list[Record], min_saturating_scales: int = 4) -> list[ScalingFit]:
    """A fit of final validation loss against N and against C for each (activation, norm) group
    present at >= 2 scales. Saturating form with >= ``min_saturating_scales`` scales (falls back to
    the power law, and says so, if it does not converge); pure power law otherwise. [] without scipy."""
    if not have_scipy():
        return []
    fits = []
    for group, pts in scaling_points(records).items():
        scales = {p[0] for p in pts}
        if len(scales) < 2:
            continue
        for xname, idx in (("N", 1), ("C", 2)):
            use = [(p[idx], p[3]) for p in pts if math.isfinite(p[idx]) and p[idx] > 0]
            xs, ys = [u[0] for u in use], [u[1] for u in use]
            if len(set(xs)) >= 2:
                fits.append(_fit(group, xname, xs, ys, len(scales), min_saturating_scales))
    return fits
