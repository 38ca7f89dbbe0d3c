"""The report's figures of cells: loss curves, the cost / quality frontier, each cell's probes, the
outliers under precision (PowLU's claim: bounded activations survive low precision) and the routing of
mixture-of-experts cells. The figures comparing cells are in ``figures.compare``."""

from __future__ import annotations

import math

import numpy as np

from ..curves import tokens_per_step
from ..records import Record
from ..stats.costs import frontier_points, pareto_front
from ..stats.groups import run_order
from . import figure as _figure, png as _png, rc as _rc

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


# ---- outliers under precision (record['outliers'], bench/run/engine/probes/outliers.py) ------------------

SITE_TITLES = {"ffn_hidden": "FFN hidden activation (input of down)", "resid": "residual stream",
               "ffn_out": "FFN output"}


def outliers(r: Record) -> dict:
    """record['outliers'] (bench/run/engine/probes/outliers.py): a typed field, or an older record's extra key."""
    o = r.outliers if getattr(r, "outliers", None) is not None else r.extra.get("outliers")
    return o if isinstance(o, dict) else {}


def outlier_records(records: list[Record]) -> list[Record]:
    return [r for r in records if outliers(r).get("steps")]


def precision_of(r: Record) -> str:
    return r.precision or (r.config.get("train") or {}).get("precision", "?")


def fig_outliers(records: list[Record]) -> str | None:
    """Base64 PNG, or None when no record has outlier samples."""
    recs = outlier_records(records)
    if not recs:
        return None
    import matplotlib
    from matplotlib.ticker import MaxNLocator

    acts = list(dict.fromkeys(r.activation for r in recs))
    precs = list(dict.fromkeys(precision_of(r) for r in recs))
    colors = matplotlib.colormaps["tab10"]
    sites = [s for s in ("ffn_hidden", "resid") if any(s in outliers(r)["sites"] for r in recs)]
    with _rc():
        fig = _figure(10.5, 2.9 * len(sites))
        axes = fig.subplots(len(sites), 3, squeeze=False)
        for i, site in enumerate(sites):
            for r in recs:
                stats = outliers(r)["sites"].get(site)
                if not stats:
                    continue
                style = {"color": colors(acts.index(r.activation) % 10),
                         "linestyle": LINESTYLES[precs.index(precision_of(r)) % len(LINESTYLES)],
                         "label": f"{r.activation} {r.norm} {precision_of(r)}"}
                layers = list(range(1, len(stats["max_abs"][-1]) + 1))
                axes[i, 0].plot(layers, stats["max_abs"][-1], marker="o", ms=3, **style)
                axes[i, 1].plot(layers, stats["e4m3_under"][-1], marker="o", ms=3, **style)
                axes[i, 2].plot(outliers(r)["steps"], [max(v) for v in stats["max_abs"]], **style)
            title = SITE_TITLES[site]
            axes[i, 0].set(title=f"{title}\nmax |a| (last sample)", xlabel="layer", yscale="log")
            axes[i, 1].set(title="fraction below e4m3 min normal after scaling", xlabel="layer")
            axes[i, 2].set(title="amax over training (max over layers)", xlabel="step", yscale="log")
            for j in (0, 2):  # e4m3's max finite value
                axes[i, j].axhline(448.0, color="grey", lw=0.6)
            for j in (0, 1):
                axes[i, j].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0, 2].legend(loc="best")
        return _png(fig)


# ---- mixture of experts: routing (record['moe']) ---------------------------------------------------

def fig_expert_load(moe: dict) -> str | None:
    """One heatmap per layer: expert (rows) x sampled step (columns), the fraction of routing assignments
    each expert received; 1/E is a perfectly balanced router (the colour scale is centred there)."""
    from matplotlib.colors import TwoSlopeNorm

    load = np.asarray(moe.get("load") or [], dtype=float)  # (samples, layers, experts)
    steps = moe.get("steps") or []
    if load.ndim != 3 or not load.size:
        return None
    n_samples, n_layers, n_experts = load.shape
    cols = min(4, n_layers)
    rows = math.ceil(n_layers / cols)
    uniform = 1.0 / n_experts
    norm = TwoSlopeNorm(vcenter=uniform, vmin=0.0, vmax=max(float(load.max()), 2 * uniform))
    with _rc():
        fig = _figure(2.8 * cols + 1.0, rows * max(2.0, 0.12 * n_experts + 1.0))
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        im = None
        for layer, ax in enumerate(axes):
            if layer >= n_layers:
                ax.set_visible(False)
                continue
            im = ax.imshow(load[:, layer, :].T, aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest")
            ax.grid(False)  # a grid over a heatmap hides cells
            ticks = list(range(0, n_samples, max(1, n_samples // 4)))
            ax.set_xticks(ticks, [str(steps[i]) for i in ticks] if len(steps) == n_samples else ticks)
            ax.set(title=f"layer {layer + 1}", xlabel="step", ylabel="expert")
        fig.colorbar(im, ax=list(axes[:n_layers]), shrink=0.8, label=f"load (uniform 1/{n_experts})")
        return _png(fig)


def fig_routing_lines(moe: dict) -> str | None:
    """Per-layer lines over training: load max/mean, router entropy, dropped fraction (if any drop)."""
    from matplotlib import colormaps

    steps = np.asarray(moe.get("steps") or [], dtype=float)
    keys = [("load_max_over_mean", "expert load max / mean"), ("router_entropy", "router entropy (nats)")]
    if moe.get("capacity_factor") is not None:
        keys.append(("dropped_fraction", "dropped assignments"))
    panels = [(k, t, np.asarray(moe[k], dtype=float)) for k, t in keys if moe.get(k)]
    panels = [(k, t, a) for k, t, a in panels if a.ndim == 2 and len(a) == len(steps)]
    if not panels or not steps.size:
        return None
    cmap = colormaps["viridis"]
    with _rc():
        fig = _figure(3.0 * len(panels), 2.4)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (key, title, a) in zip(axes, panels):
            n = a.shape[1]
            for j in range(n):
                ax.plot(steps, a[:, j], color=cmap(j / max(1, n - 1)), lw=1,
                        label=f"layer {j + 1}" if j in (0, n - 1) else None)
            ax.set(title=title, xlabel="step")
            ax.legend(frameon=False)
        return _png(fig)
