"""Figures that compare cells, drawn as the papers draw them; each returns a base64 PNG or None
when the records hold nothing to plot. Seed repeats are averaged (mean over seeds).

- fig_act_var_by_scheme: per-layer residual activation variance at the end of training, one line
  per scheme (GPAS paper, Figures 1 and 5), a panel per activation.
- fig_gpas_gates: GPAS gate a_l over training, a line per layer, a panel per (activation, scheme).
- fig_effective_rank: effective rank of each FFN matrix by layer, a line per activation, a panel
  per matrix kind (PolyCom Figure 6).
- fig_layer_cosine: layer x layer cosine similarity heatmaps side by side (PolyCom Figure 7).
- fig_loss_bands: validation loss against tokens, mean over seeds with a min-max band.
- fig_lr: final loss against LR per cell, diverged LRs marked x at l_0, the frontier dashed.
- fig_ranks: each group's rank in the equal-steps / FLOPs / time views (lines that cross = the
  views disagree).
- fig_laws: the scaling laws (stats.laws, a ladder's rungs or a matrix's scales): final validation
  loss against non-embedding parameters per group, every seed's point, the seed band per rung, each
  fitted law with its interval band (solid over the rungs, dashed where it extrapolates), and the
  crossovers marked.
"""

from __future__ import annotations

import numpy as np

from ..curves import tokens_per_step
from ..stats.groups import group_records, run_order
from ..stats.laws import MAX_EXTRAPOLATION, quantiles
from . import figure, png, rc
from .cells import _plain_log

MAX_PANELS = 8  # per row of panels; the rest are named in the figure's note, not drawn
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))


def _palette(names):
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _by(records, *keys) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for r in run_order(records):
        out.setdefault(tuple(getattr(r, k) for k in keys), []).append(r)
    return out


def _mean_rows(rows) -> np.ndarray | None:
    """Mean of equal-length numeric vectors (None if none, or lengths differ)."""
    rows = [np.asarray(r, float).ravel() for r in rows if r is not None and len(r)]
    if not rows or len({len(r) for r in rows}) != 1:
        return None
    return np.mean(np.stack(rows), axis=0)


def _final(pr: dict, key: str):
    v = (pr or {}).get(key)
    return v[-1] if isinstance(v, list) and v else None


def _order(records, key):
    return list(dict.fromkeys(getattr(r, key) for r in run_order(records)))


def fig_act_var_by_scheme(records) -> str | None:
    """Per-layer activation variance at the last probe sample; panels: scale x activation."""
    groups = {k: m for k, recs in _by(records, "scale", "activation", "norm").items()
              if (m := _mean_rows([_final(r.probes, "act_var") for r in recs])) is not None}
    if not groups:
        return None
    scales = list(dict.fromkeys(k[0] for k in groups))
    acts = [a for a in _order(records, "activation") if any(k[1] == a for k in groups)][:MAX_PANELS]
    colors = _palette(_order(records, "norm"))
    from matplotlib.ticker import MaxNLocator
    with rc():
        fig = figure(2.6 * len(acts) + 1.2, 2.4 * len(scales))
        axes = fig.subplots(len(scales), len(acts), squeeze=False)
        for i, scale in enumerate(scales):
            for j, act in enumerate(acts):
                ax = axes[i][j]
                for (s, a, norm), m in groups.items():
                    if s == scale and a == act:
                        ax.plot(range(len(m)), m, marker=".", color=colors[norm], label=norm)
                ax.set_yscale("log")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_title(f"{scale}: {act}")
                ax.set_xlabel("layer (0 = embedding)")
                if j == 0:
                    ax.set_ylabel("activation variance")
        handles, labels = axes[0][-1].get_legend_handles_labels()
        axes[0][-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        return png(fig)


def fig_gpas_gates(records) -> str | None:
    """GPAS gate a_l against step, one line per layer (viridis: first to last)."""
    import matplotlib
    panels = {}
    for (scale, act, norm), recs in _by(records, "scale", "activation", "norm").items():
        prs = [r.probes or {} for r in recs if (r.probes or {}).get("gpas_gate")]
        if not prs:
            continue
        n = min(len(p["gpas_gate"]) for p in prs)
        m = _mean_rows([np.asarray(p["gpas_gate"][:n], float).ravel() for p in prs])
        if m is None:
            continue
        steps = np.asarray(prs[0].get("steps") or range(n), float)[:n]
        panels[(scale, act, norm)] = (steps, m.reshape(n, -1))
    if not panels:
        return None
    keys = list(panels)[:MAX_PANELS * 3]
    cols = min(len(keys), 4)
    rows = -(-len(keys) // cols)
    cmap = matplotlib.colormaps["viridis"]
    with rc():
        fig = figure(2.6 * cols, 2.2 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, key in zip(axes, keys):
            steps, a = panels[key]
            k = a.shape[1]
            for j in range(k):
                ax.plot(steps[:len(a)], a[:, j], color=cmap(j / max(1, k - 1)), lw=1,
                        label=f"layer {j + 1}" if j in (0, k - 1) else None)
            ax.set_title(" / ".join(key))
            ax.set_xlabel("step")
            ax.set_ylabel("gate a_l")
            ax.legend(frameon=False, fontsize=6)
        for ax in axes[len(keys):]:
            ax.set_visible(False)
        return png(fig)


def _rank_kind(name: str) -> tuple[int, str]:
    """'3.up' or 'blocks.2.ffn.up' -> (layer, 'up')."""
    parts = name.replace("blocks.", "").replace(".ffn", "").split(".")
    return int(parts[0]), parts[-1]


def fig_effective_rank(records) -> str | None:
    """Effective rank of each FFN matrix against layer, a line per activation (linestyle = scheme);
    panels: scale x matrix kind (gate, up, down)."""
    data = {}
    for (scale, act, norm), recs in _by(records, "scale", "activation", "norm").items():
        ranks = [(r.probes or {}).get("effective_rank") or {} for r in recs]
        ranks = [x for x in ranks if x]
        if not ranks:
            continue
        for name in ranks[0]:
            vals = [float(x[name]) for x in ranks if name in x]
            layer, kind = _rank_kind(name)
            data.setdefault((scale, kind), {}).setdefault((act, norm), {})[layer] = float(np.mean(vals))
    if not data:
        return None
    scales = list(dict.fromkeys(k[0] for k in data))
    kinds = [k for k in ("gate", "up", "down") if any(d[1] == k for d in data)]
    colors = _palette(_order(records, "activation"))
    norms = _order(records, "norm")
    from matplotlib.ticker import MaxNLocator
    with rc():
        fig = figure(2.8 * len(kinds) + 1.6, 2.4 * len(scales))
        axes = fig.subplots(len(scales), len(kinds), squeeze=False)
        for i, scale in enumerate(scales):
            for j, kind in enumerate(kinds):
                ax = axes[i][j]
                for (act, norm), per_layer in data.get((scale, kind), {}).items():
                    layers = sorted(per_layer)
                    ax.plot(layers, [per_layer[k] for k in layers], marker="o", ms=3, color=colors[act],
                            ls=LINESTYLES[norms.index(norm) % len(LINESTYLES)], label=f"{act} / {norm}")
                ax.set_title(f"{scale}: {kind}")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("layer")
                if j == 0:
                    ax.set_ylabel("effective rank")
        handles, labels = axes[0][-1].get_legend_handles_labels()
        axes[0][-1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        return png(fig)


def fig_layer_cosine(records) -> str | None:
    """Layer x layer cosine similarity at the end of training, one heatmap per (scale, activation,
    scheme), side by side on one colour scale."""
    mats = {}
    for key, recs in _by(records, "scale", "activation", "norm").items():
        m = _mean_rows([np.asarray(c, float).ravel() for r in recs
                        if (c := (r.probes or {}).get("layer_cosine"))])
        if m is not None:
            side = int(round(np.sqrt(m.size)))
            if side * side == m.size:
                mats[key] = m.reshape(side, side)
    if not mats:
        return None
    keys = list(mats)[:MAX_PANELS * 3]
    cols = min(len(keys), 4)
    rows = -(-len(keys) // cols)
    lo = min(0.0, min(float(np.nanmin(m)) for m in mats.values()))
    with rc():
        fig = figure(2.5 * cols + 0.6, 2.3 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        im = None
        for ax, key in zip(axes, keys):
            im = ax.imshow(mats[key], cmap="magma", vmin=lo, vmax=1.0)
            ax.set_title(" / ".join(key))
            ax.set_xlabel("layer")
            ax.set_ylabel("layer")
            ax.grid(False)
        for ax in axes[len(keys):]:
            ax.set_visible(False)
        fig.colorbar(im, ax=list(axes[:len(keys)]), shrink=0.8)
        return png(fig)


def fig_loss_bands(records, curves: dict, column: str = "val/loss") -> str | None:
    """Validation loss against tokens, a line per group (mean over seeds at the shared validation
    steps) with a min-max band over seeds; a panel per scale."""
    lines = {}
    for (scale, row, norm), recs in group_records(records).items():
        pts = [dict(curves[r.id][column]) for r in recs if r.status == "ok" and column in (curves.get(r.id) or {})]
        if not pts:
            continue
        steps = sorted(set.intersection(*(set(p) for p in pts)))
        if not steps:
            continue
        vals = np.array([[p[s] for s in steps] for p in pts])
        tps = tokens_per_step(recs[0]) or 1
        lines[(scale, row, norm)] = ([(s + 1) * tps for s in steps], vals.mean(0), vals.min(0), vals.max(0), len(pts))
    if not lines:
        return None
    from matplotlib.ticker import EngFormatter
    scales = list(dict.fromkeys(k[0] for k in lines))
    colors = _palette(_order(records, "activation"))
    norms = _order(records, "norm")
    with rc():
        fig = figure(6.5 * min(2, len(scales)) + 1.5, 3.0 * -(-len(scales) // 2))
        axes = fig.subplots(-(-len(scales) // 2), min(2, len(scales)), squeeze=False).ravel()
        for ax, scale in zip(axes, scales):
            for (s, row, norm), (x, mean, lo, hi, n) in lines.items():
                if s != scale:
                    continue
                c = colors[row.split(" [")[0]]
                ax.plot(x, mean, color=c, ls=LINESTYLES[norms.index(norm) % len(LINESTYLES)], lw=1.2,
                        marker=".", ms=3, label=f"{row} / {norm} (n={n})")
                if n > 1:
                    ax.fill_between(x, lo, hi, color=c, alpha=0.15, lw=0)
            ax.set_title(f"{scale}: validation loss (band: min-max over seeds)")
            ax.set_xlabel("tokens")
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
            ax.set_ylabel("loss (nats/token)")
            ax.legend(frameon=False, loc="upper right", fontsize=6)
        for ax in axes[len(scales):]:
            ax.set_visible(False)
        return png(fig)


def fig_lr(lr_curves) -> str | None:
    """Final validation loss against LR (log x) per group; diverged / untrained LRs as x at l_0;
    each group's stability frontier as a dashed vertical line."""
    if not lr_curves:
        return None
    scales = list(dict.fromkeys(c.scale for c in lr_curves))
    colors = _palette(list(dict.fromkeys(c.group[0].split(" [")[0] for c in lr_curves)))
    norms = list(dict.fromkeys(c.group[1] for c in lr_curves))
    with rc():
        fig = figure(6.0 * len(scales) + 1.8, 3.4)
        axes = fig.subplots(1, len(scales), squeeze=False)[0]
        for ax, scale in zip(axes, scales):
            for c in (c for c in lr_curves if c.scale == scale):
                color = colors[c.group[0].split(" [")[0]]
                ls = LINESTYLES[norms.index(c.group[1]) % len(LINESTYLES)]
                good = [p for p in c.points if p.trains and p.value is not None]
                bad = [p for p in c.points if not p.trains and p.value is not None]
                ax.plot([p.lr for p in c.points if p.value is not None],
                        [p.value for p in c.points if p.value is not None], color=color, ls=ls, lw=1, alpha=0.6)
                ax.plot([p.lr for p in good], [p.value for p in good], "o", color=color, ms=4,
                        label=f"{c.group[0]} / {c.group[1]}")
                if bad:
                    ax.plot([p.lr for p in bad], [p.value for p in bad], "x", color=color, ms=7, mew=2)
                if c.frontier is not None:
                    ax.axvline(c.frontier, color=color, ls="--", lw=0.8, alpha=0.7)
            l0s = {c.l0 for c in lr_curves if c.scale == scale and c.l0 is not None}
            for l0 in l0s:
                ax.axhline(l0, color="0.4", lw=0.8, ls=":")
            ax.set_xscale("log")
            ax.set_xlabel("peak learning rate")
            ax.set_ylabel("final validation loss, min(loss, l_0)")
            ax.set_title(f"{scale}: x = diverged or no better than init (plotted at l_0, dotted); "
                         "dashed = frontier", fontsize=7)
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        return png(fig)


def fig_ranks(disagreements, axes_order=("steps", "flops", "seconds")) -> str | None:
    """A bump chart per scale: each group's rank in each view; crossing lines = disagreement."""
    dis = [d for d in disagreements if any(any(v is not None for v in r.values()) for r in d.ranks.values())]
    if not dis:
        return None
    from matplotlib.ticker import MaxNLocator
    with rc():
        fig = figure(4.2 * len(dis) + 1.5, 0.28 * max(len(d.ranks) for d in dis) + 1.8)
        axs = fig.subplots(1, len(dis), squeeze=False)[0]
        colors = _palette([g for d in dis for g in d.ranks])
        for ax, d in zip(axs, dis):
            for g, r in d.ranks.items():
                xs = [i for i, a in enumerate(axes_order) if r.get(a) is not None]
                ax.plot(xs, [r[axes_order[i]] for i in xs], marker="o", color=colors[g],
                        lw=2.0 if g in d.changed else 0.8, label=" / ".join(g))
            ax.set_xticks(range(len(axes_order)), ["equal steps", "equal FLOPs", "equal time"])
            ax.invert_yaxis()
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("rank (1 = lowest loss)")
            ax.set_title(f"{d.scale}: rank per view (thick = changes)")
        axs[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=6)
        return png(fig)


# ---- scaling laws --------------------------------------------------------------------------------

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
    with rc():
        fig = figure(7.5, 4.2)
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
        return png(fig)

