"""The mixture-of-experts section of `bench report`: per-layer expert-load heatmaps over training,
load imbalance, router entropy and dropped tokens (records' ``moe`` entry, bench/run/moe_probes.py).
Drawn in the report's one figure style (``figures.style``); report.py only calls ``moe_section``."""

from __future__ import annotations

import html
import math

import numpy as np

from .figures.style import figure, png, rc
from .records import Record


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


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
    with rc():
        fig = figure(2.8 * cols + 1.0, rows * max(2.0, 0.12 * n_experts + 1.0))
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
        return png(fig)


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
    with rc():
        fig = figure(3.0 * len(panels), 2.4)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (key, title, a) in zip(axes, panels):
            n = a.shape[1]
            for j in range(n):
                ax.plot(steps, a[:, j], color=cmap(j / max(1, n - 1)), lw=1,
                        label=f"layer {j + 1}" if j in (0, n - 1) else None)
            ax.set(title=title, xlabel="step")
            ax.legend(frameon=False)
        return png(fig)


def _summary(rec: Record) -> str:
    moe = rec.moe
    m = rec.config.get("model", {})
    facts = [f"{m.get('moe_experts')} experts, top-{m.get('moe_top_k')}, "
             f"{m.get('moe_shared_experts', 0)} shared, softmax {m.get('moe_softmax')} top-k",
             f"capacity factor {moe.get('capacity_factor')}" if moe.get("capacity_factor") is not None
             else "dropless"]
    p = rec.params
    if p is not None and p.active:
        facts.append(f"{p.active:,} active of {p.total:,} parameters")
    last = {k: moe[k][-1] for k in ("load_max_over_mean", "router_entropy", "lb_loss", "z_loss", "dropped_fraction")
            if moe.get(k)}
    if last:
        step = moe["steps"][-1]
        facts.append(f"at step {step}: load max/mean {max(last.get('load_max_over_mean', [0])):.2f} (worst layer), "
                     f"entropy {np.mean(last.get('router_entropy', [0])):.3f} nats (layer mean, uniform "
                     f"{math.log(m.get('moe_experts') or 1):.3f}), LB loss {np.mean(last.get('lb_loss', [0])):.3f}, "
                     f"z-loss {np.mean(last.get('z_loss', [0])):.3f}"
                     + (f", dropped {np.mean(last['dropped_fraction']):.2%}" if moe.get("capacity_factor") else ""))
    return "; ".join(facts)


def moe_section(records: list[Record]) -> list[str]:
    """HTML parts for every record with routing statistics (none: no section)."""
    cells = [r for r in records if r.moe and r.moe.get("steps")]
    if not cells:
        return []
    parts = ["<h2>Mixture of experts: routing</h2>",
             '<p class="note">Sampled every train.probe_every steps from the last training micro-batch before the '
             "step. Heatmaps: the fraction of the T&middot;k routing assignments each expert received, per layer "
             "(blue below, red above the uniform 1/E). Load max/mean is 1 for a balanced router. Effective rank in "
             "the probes is the mean over a layer's experts; FFN max |a| and kurtosis pool all its experts "
             "(docs/moe.md).</p>"]
    for r in cells:
        parts.append(f"<h3>{html.escape(r.id)}</h3>")
        parts.append(f'<p class="note">{html.escape(_summary(r))}</p>')
        for fn, alt in ((fig_expert_load, "expert load per layer"), (fig_routing_lines, "routing statistics")):
            try:
                b64 = fn(r.moe)
            except Exception as e:  # noqa: BLE001 - one bad figure must not lose the report
                parts.append(f'<p class="note">{alt}: not drawn ({html.escape(type(e).__name__)}: '
                             f"{html.escape(str(e))})</p>")
                continue
            if b64:
                parts.append(_img(b64, f"{r.id}: {alt}"))
    return parts
