"""The scaling laws' figure (stats.laws, a ladder's rungs or a matrix's scales): final validation loss
against non-embedding parameters per group, every seed's point, the seed band per rung, each fitted law
with its interval band (solid over the rungs, dashed where it extrapolates), and the crossovers marked."""

from __future__ import annotations

import numpy as np

from ..stats.laws import MAX_EXTRAPOLATION, quantiles
from . import figure as _figure, png as _png, rc as _rc
from .cells import _plain_log


def _band(fit, grid):
    """(lo, hi) of the replicates' mean curves at each grid point, or None without a bootstrap."""
    if fit.boot is None or not len(fit.boot):
        return None
    q = quantiles(fit.confidence)
    curves = fit.replicate_curves(grid)
    return np.quantile(curves, q[0], axis=0), np.quantile(curves, q[1], axis=0)


def _seed_band(ax, xs, ys, color) -> None:
    """Each rung's spread over seeds (min to max) as a vertical bar behind its points."""
    for x in np.unique(xs):
        y = ys[xs == x]
        if len(y) > 1:
            ax.vlines(x, y.min(), y.max(), color=color, lw=3, alpha=0.3)


def crossings(a, b, x_range, points: int = 2000) -> list[float]:
    """Every x in range where the fitted laws of a and b cross (two such laws cross at most twice)."""
    grid = np.geomspace(*x_range, points)
    d = a.curve(grid) - b.curve(grid)
    j = np.nonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0)[0]
    lg = np.log(grid)
    return [float(np.exp(lg[i] + d[i] / (d[i] - d[i + 1]) * (lg[i + 1] - lg[i]))) for i in j]


def fig_laws(view, points: dict) -> str | None:
    """Loss against N (log x): points per seed, fitted curve and its band, extrapolation dashed up to the
    prediction target (or MAX_EXTRAPOLATION past the largest rung), every crossing as a vertical line (the
    first one's interval shaded)."""
    if not view.fits:
        return None
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    colors = {f.group: cmap(i % 10) for i, f in enumerate(view.fits)}
    lo = min(min(f.rungs) for f in view.fits)
    top = max(max(f.rungs) for f in view.fits)
    far = max(view.predict or 0, top * MAX_EXTRAPOLATION)
    with _rc():
        fig = _figure(7.5, 4.2)
        ax = fig.add_subplot()
        for f in view.fits:
            c = colors[f.group]
            xs, ys = (np.asarray(v, float) for v in points.get(f.group, ([], [])))
            _seed_band(ax, xs, ys, c)
            ax.scatter(xs, ys, color=c, s=16, zorder=3)
            inside = np.geomspace(min(f.rungs), max(f.rungs), 80)
            beyond = np.geomspace(max(f.rungs), far, 80)
            label = f"{f.group}: alpha={f.alpha:.3g}" + (f", E={f.E:.3g}" if f.E else "")
            ax.plot(inside, f.curve(inside), color=c, lw=1.3, label=label)
            ax.plot(beyond, f.curve(beyond), color=c, lw=1.1, ls="--")
            grid = np.concatenate([inside, beyond[1:]])
            if (band := _band(f, grid)) is not None:
                ax.fill_between(grid, band[0], band[1], color=c, alpha=0.15, lw=0)
        fits = {f.group: f for f in view.fits}
        for cx in view.crossovers:
            if cx.x is None:
                continue
            if cx.interval:  # the first crossing's interval
                ax.axvspan(*cx.interval, color="0.5", alpha=0.08, lw=0)
            for x in crossings(fits[cx.a], fits[cx.b], cx.x_range):
                ax.axvline(x, color="0.3", lw=0.9, ls=":")
                ax.annotate(f"{cx.a} = {cx.b}", (x, 0.98), xycoords=("data", "axes fraction"), rotation=90,
                            va="top", ha="right", fontsize=6)
        ax.axvline(top, color="0.6", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.3, far * 1.1)
        _plain_log(ax.xaxis, sparse=True)
        ax.set_xlabel("non-embedding parameters N (log)")
        ax.set_ylabel("final validation loss (nats/token)")
        ax.set_title(f"points = seeds; band = {view.fits[0].confidence:.0%} interval of the fitted mean; "
                     "dashed = extrapolation past the largest rung (grey line)")
        ax.legend(frameon=False, loc="upper right")
        return _png(fig)

