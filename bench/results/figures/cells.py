"""The report's own figures: loss curves, the cost / quality frontier, per-cell probes and the
scaling fits (the figures comparing cells are in ``figures.compare``); one style (``figures.style``)."""

from __future__ import annotations

import math

import numpy as np

from ..curves import tokens_per_step
from ..frontier import frontier_points, pareto_front
from ..grouping import run_order
from ..records import Record
from .style import figure as _figure, png as _png, rc as _rc

LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


# ---- figures ------------------------------------------------------------------------------------

def _num(v: float) -> str:
    return f"{v:,.0f}" if 100 <= abs(v) < 1e7 else f"{v:.3g}"


def _plain_log(axis, sparse: bool = False) -> None:
    """Log-scale tick labels as plain numbers ('2.4', '3,000') instead of '2.4x10^0'; ``sparse``
    labels only the minor ticks at 2x and 5x a power of ten."""
    from matplotlib.ticker import FuncFormatter
    axis.set_major_formatter(FuncFormatter(lambda v, _: _num(v)))
    axis.set_minor_formatter(FuncFormatter(
        lambda v, _: _num(v) if not sparse or f"{v:.0e}"[0] in "25" else ""))


def _styles(records: list[Record]) -> tuple[dict, dict]:
    """activation -> color, norm -> linestyle (in first-seen order)."""
    import matplotlib
    cmap = matplotlib.colormaps["tab10"]
    records = run_order(records)
    acts = list(dict.fromkeys(r.activation for r in records))
    norms = list(dict.fromkeys(r.norm for r in records))
    return ({a: cmap(i % 10) for i, a in enumerate(acts)},
            {n: LINESTYLES[i % len(LINESTYLES)] for i, n in enumerate(norms)})


def fig_loss_curves(records: list[Record], curves: dict) -> str | None:
    """Training and validation loss against tokens, one line per cell: color = activation,
    linestyle = norm; a row per scale."""
    recs = [r for r in run_order(records) if curves.get(r.id)]
    if not recs:
        return None
    from matplotlib.ticker import EngFormatter, MaxNLocator
    colors, styles = _styles(records)
    scales = list(dict.fromkeys(r.scale for r in recs))
    with _rc():
        fig = _figure(9.5, 2.8 * len(scales))
        axes = fig.subplots(len(scales), 2, squeeze=False)
        for row, scale in enumerate(scales):
            seen = set()
            for r in (r for r in recs if r.scale == scale):
                tps = tokens_per_step(r) or 1
                key = (r.activation, r.norm)
                label = f"{r.activation} / {r.norm}" if key not in seen else None
                seen.add(key)
                for ax, col in zip(axes[row], ("train/loss", "val/loss")):
                    pts = curves[r.id].get(col) or []
                    if pts:
                        x = [(s + 1) * tps for s, _ in pts]
                        ax.plot(x, [v for _, v in pts], color=colors[r.activation], ls=styles[r.norm],
                                lw=1.1, alpha=0.85, marker="." if col == "val/loss" else None, ms=3, label=label)
            for ax, name in zip(axes[row], ("training loss", "validation loss")):
                ax.set_title(f"{scale}: {name}")
                ax.xaxis.set_major_formatter(EngFormatter(sep=""))
                ax.xaxis.set_major_locator(MaxNLocator(6))
                ax.set_xlabel("tokens")
                ax.set_ylabel("loss (nats/token)")
            handles, labels = axes[row][1].get_legend_handles_labels()
            if not handles:
                handles, labels = axes[row][0].get_legend_handles_labels()
            if handles:
                axes[row][1].legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
        return _png(fig)


def fig_frontier(records: list[Record]) -> tuple[str | None, list[Record]]:
    """Validation PPL against tokens/s per group (95% CI bars), the Pareto front highlighted."""
    pts = frontier_points(records)
    if not pts:
        return None, []
    front = pareto_front([(p["tps"], p["ppl"]) for p in pts])
    colors, _ = _styles(records)
    scales = list(dict.fromkeys(p["scale"] for p in pts))
    norms = list(dict.fromkeys(p["norm"] for p in pts))
    with _rc():
        fig = _figure(7.5, 4.2)
        ax = fig.add_subplot()
        fx = [pts[i]["tps"] for i in front]
        fy = [pts[i]["ppl"] for i in front]
        ax.step(fx, fy, where="pre", color="0.3", lw=1.2, ls="--", zorder=1, label="Pareto front")
        ax.scatter(fx, fy, s=160, facecolors="none", edgecolors="crimson", lw=1.5, zorder=3,
                   label="on the front")
        for p in pts:
            m = MARKERS[norms.index(p["norm"]) % len(MARKERS)]
            ax.errorbar(p["tps"], p["ppl"], xerr=p["tps_ci"], yerr=p["ppl_ci"], fmt=m, ms=6,
                        color=colors[p["activation"]], ecolor=colors[p["activation"]], elinewidth=0.8, capsize=2,
                        zorder=2, mec="black" if scales.index(p["scale"]) else None,
                        mew=0.6)
            name = p["row"] + " / " + p["norm"] + (f" ({p['scale']})" if len(scales) > 1 else "") + (
                " [shared machine]" if p["shared"] else "")
            ax.annotate(name, (p["tps"], p["ppl"]), textcoords="offset points", xytext=(4, 4), fontsize=6)
        xs = [p["tps"] for p in pts]
        if min(xs) > 0 and max(xs) / min(xs) > 10:
            ax.set_xscale("log")
            _plain_log(ax.xaxis, sparse=True)
        ax.set_xlabel("throughput (steady-state tokens/s; higher is cheaper)")
        ax.set_ylabel("final validation PPL (lower is better)")
        ax.set_title("cost / quality: mean over seeds, bars = 95% CI; marker = norm")
        ax.legend(loc="best", frameon=False)
        return _png(fig), [pts[i] for i in front]


def _matrix(values) -> np.ndarray | None:
    """[[...] per step] -> a float array (steps, columns), trailing dimensions flattened; None if
    missing, empty or ragged."""
    if values is None:
        return None
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim < 2 or a.size == 0:
        return None
    return a.reshape(a.shape[0], -1)


PROBE_LINES = (("act_var", "activation variance", "layer"), ("grad_norm", "gradient norm", "block"),
               ("weight_norm", "weight norm", "block"), ("gpas_gate", "GPAS gate", "block"),
               ("gpas_scale", "GPAS scale", "block"), ("ffn_max_abs", "FFN max |a|", "block"),
               ("ffn_kurtosis", "FFN kurtosis", "block"))


def _layer_lines(ax, steps, a: np.ndarray, title: str, unit: str) -> None:
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    k = a.shape[1]
    for j in range(k):
        ax.plot(steps[: len(a)], a[:, j], color=cmap(j / max(1, k - 1)), lw=1,
                label=f"{unit} {j}" if j in (0, k - 1) else None)
    finite = a[np.isfinite(a)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 50:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.legend(frameon=False, loc="upper left")


def fig_probe_dynamics(probes: dict) -> str | None:
    """Per-layer lines over training: activation variance, gradient / weight norms, GPAS gate and
    scale, FFN max |a| and kurtosis (viridis: first to last layer)."""
    steps = np.asarray(probes.get("steps") or [], dtype=float)
    panels = [(key, title, unit, a) for key, title, unit in PROBE_LINES
              if (a := _matrix(probes.get(key))) is not None]
    if not panels or not steps.size:
        return None
    cols = 4 if len(panels) > 4 else len(panels)
    rows = math.ceil(len(panels) / cols)
    with _rc():
        fig = _figure(2.6 * cols, 2.2 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (key, title, unit, a) in zip(axes, panels):
            n = min(len(steps), len(a))
            _layer_lines(ax, steps[:n], a[:n], title, unit)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        return _png(fig)


def fig_probe_structure(probes: dict) -> str | None:
    """Effective rank per FFN matrix, the layer-cosine heatmap and layer importance."""
    ranks = probes.get("effective_rank") or {}
    cos = probes.get("layer_cosine")
    imp = probes.get("layer_importance")
    panels = [p for p, ok in (("rank", bool(ranks)), ("cos", cos is not None and len(cos) > 0),
                              ("imp", imp is not None and len(imp) > 0)) if ok]
    if not panels:
        return None
    widths = {"rank": max(3.0, 0.18 * len(ranks) + 1), "cos": 3.2, "imp": 3.0}
    with _rc():
        fig = _figure(sum(widths[p] for p in panels), 2.8)
        axes = fig.subplots(1, len(panels), squeeze=False, width_ratios=[widths[p] for p in panels])[0]
        for ax, p in zip(axes, panels):
            if p == "rank":
                names = list(ranks)
                kinds = [n.rsplit(".", 1)[-1] for n in names]
                palette = {k: f"C{i}" for i, k in enumerate(dict.fromkeys(kinds))}
                ax.bar(range(len(names)), [float(ranks[n]) for n in names], color=[palette[k] for k in kinds])
                ax.set_xticks(range(len(names)), [n.replace("blocks.", "").replace(".ffn", "") for n in names],
                              rotation=90, fontsize=6)
                ax.set_title("effective rank per FFN matrix")
                ax.grid(axis="x", visible=False)
            elif p == "cos":
                m = np.asarray(cos, dtype=float)
                im = ax.imshow(m, cmap="magma", vmin=min(0.0, float(np.nanmin(m))), vmax=1.0)
                ticks = range(0, len(m), max(1, len(m) // 8))
                ax.set_xticks(ticks)
                ax.set_yticks(ticks)
                ax.set_title("layer cosine similarity")
                ax.set_xlabel("layer")
                ax.set_ylabel("layer")
                ax.grid(False)
                fig.colorbar(im, ax=ax, shrink=0.8)
            else:
                vals = [float(v) for v in imp]
                ax.bar(range(len(vals)), vals, color="C3")
                ax.set_xticks(range(len(vals)))
                base = probes.get("base_loss")
                ax.set_title("layer importance" + (f" (base loss {base:.3f})" if isinstance(base, (int, float))
                                                    else ""))
                ax.set_xlabel("block")
        return _png(fig)


def fig_scaling(fits) -> str | None:
    """Final validation loss against N and against C (log-log) with the fitted curves."""
    if not fits:
        return None
    groups = list(dict.fromkeys(f.group for f in fits))
    with _rc():
        fig = _figure(9.0, 3.3)
        axes = fig.subplots(1, 2)
        for ax, xname, label in ((axes[0], "N", "non-embedding parameters N"),
                                 (axes[1], "C", "training compute C = 6 N D (FLOPs)")):
            for f in (f for f in fits if f.x == xname):
                c = f"C{groups.index(f.group) % 10}"
                ax.scatter(f.xs, f.ys, color=c, s=14)
                grid = np.geomspace(min(f.xs), max(f.xs), 50)
                ax.plot(grid, f.predict(grid), color=c, lw=1,
                        label=f"{f.group[0]} / {f.group[1]}: alpha={f.alpha:.3f}")
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log(ax.yaxis)
            ax.set_xlabel(label)
            ax.set_ylabel("final validation loss")
            ax.legend(frameon=False, fontsize=6)
        return _png(fig)
