"""Every figure of the report, drawn in one style (``style``: matplotlib's object API on Agg, base64
PNGs to embed): ``cells`` (loss curves, frontier, per-cell probes, scaling) and ``compare``
(figures that set cells side by side)."""
