"""Every figure of the report, drawn in one style (here: matplotlib's object API on the Agg renderer,
no pyplot, no global state; figures returned as base64 PNG strings to embed in one self-contained
page): ``cells`` (loss curves, the frontier, each cell's probes, outliers and routing) and
``compare`` (figures that set cells and groups side by side, the scaling laws among them)."""

from __future__ import annotations

import base64
import io

DPI = 80


def figure(w: float, h: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, always the Agg renderer
    return Figure(figsize=(w, h), dpi=DPI, layout="constrained")


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def rc():
    import matplotlib
    return matplotlib.rc_context({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7,
                                  "axes.grid": True, "grid.alpha": 0.3})

