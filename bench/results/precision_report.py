"""The report's 'Outliers under precision' section: the picture that tests PowLU's claim (bounded
activations survive low precision), from each record's ``outliers`` (bench/run/outliers.py).

A figure per site (FFN hidden activation, residual stream): left, max |a| per layer at the last
sample; middle, the fraction of nonzero values that fall below e4m3's smallest normal after
tensorwise scaling, per layer; right, the amax (max over layers) over training. One line per
cell: color = activation, linestyle = precision. A table gives the per-cell worst layer and the
loss spikes (from the probes).
"""

from __future__ import annotations

import html

from .downstream import _eval, eval_columns, eval_tasks
from .figures.style import figure, png, rc
from .records import Record

SITE_TITLES = {"ffn_hidden": "FFN hidden activation (input of down)", "resid": "residual stream",
               "ffn_out": "FFN output"}
LINESTYLES = ("-", "--", ":", "-.")


def outliers(r: Record) -> dict:
    """record['outliers'] (bench/run/engine/probes/outliers.py): a typed field, or an older record's extra key."""
    o = r.outliers if getattr(r, "outliers", None) is not None else r.extra.get("outliers")
    return o if isinstance(o, dict) else {}


def outlier_records(records: list[Record]) -> list[Record]:
    return [r for r in records if outliers(r).get("steps")]


def precision_of(r: Record) -> str:
    return r.precision or (r.config.get("train") or {}).get("precision", "?")


def summary_rows(records: list[Record]) -> list[dict]:
    """Per cell, at the last sample: the largest max|a| and kurtosis over layers, and the largest
    fractions beyond the formats' ranges, for the FFN hidden activation and the residual stream."""
    rows = []
    for r in outlier_records(records):
        o = outliers(r)
        row = {"cell": r.id, "activation": r.activation, "norm": r.norm, "precision": precision_of(r),
               "fp8_recipe": r.extra.get("fp8_recipe") or "-", "status": r.status, "step": o["steps"][-1],
               "loss_spikes": (r.probes or {}).get("loss_spikes")}
        for site in ("ffn_hidden", "resid"):
            stats = o["sites"].get(site) or {}
            for stat in ("max_abs", "kurtosis", "e4m3_over", "e4m3_under", "bf16_under"):
                last = (stats.get(stat) or [[]])[-1]
                row[f"{site}.{stat}"] = max(last) if last else None
        rows.append(row)
    return rows


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
    with rc():
        fig = figure(10.5, 2.9 * len(sites))
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
        return png(fig)


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def precision_html(records: list[dict]) -> list[str]:
    """The section's HTML parts ([] when no record has outlier samples)."""
    rows = summary_rows(records)
    if not rows:
        return []
    e = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    cols = list(rows[0])
    parts = ["<h2>Outliers under precision</h2>",
             '<p class="note">Measured on the fixed probe batch under each cell\'s own precision, every '
             "train.probe_every steps. e4m3_over: fraction with |a| &gt; 448 (an unscaled fp8 e4m3 cast would "
             "saturate); e4m3_under: fraction of nonzero values below e4m3's smallest normal 2^-6 after tensorwise "
             "scaling by 448 / max|a| (what one outlier costs the rest of the tensor under fp8); bf16_under: "
             "fraction below bf16's smallest normal 2^-126. Values are the worst layer at the last sample. Grey "
             "line: 448, e4m3's max finite value. See docs/precision.md.</p>"]
    try:
        b64 = fig_outliers(records)
        parts.append(f'<img alt="outliers by activation x precision" src="data:image/png;base64,{b64}">' if b64 else "")
    except Exception as exc:  # noqa: BLE001 - a figure that fails must not lose the report
        parts.append(f'<p class="note">(outlier figure could not be drawn: {e(type(exc).__name__)}: {e(exc)})</p>')
    parts.append('<div class="scroll"><table><tr>' + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>")
    for row in rows:
        parts.append("<tr>" + "".join(f"<td>{e(_fmt(row[c]))}</td>" for c in cols) + "</tr>")
    parts.append("</table></div>")
    return parts


def downstream_html(records: list[Record]) -> list[str]:
    """'Downstream accuracy' section from record['eval'] ([] when no cell was evaluated)."""
    tasks = eval_tasks(records)
    if not tasks:
        return []
    e = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    cols = ["cell", "activation", "norm", "precision"] + [f"{t}:acc" for t in tasks]
    parts = ["<h2>Downstream accuracy</h2>",
             '<p class="note">lm-evaluation-harness on local task data (`bench eval`); accuracy of a tiny model '
             "is near chance (1 / number of choices).</p>",
             '<div class="scroll"><table><tr>' + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"]
    for r in records:
        if _eval(r):
            vals = [r.id, r.activation, r.norm, precision_of(r)] + [
                "-" if v is None else f"{v:.4f}" for v in eval_columns(r, tasks).values()]
            parts.append("<tr>" + "".join(f"<td>{e(v)}</td>" for v in vals) + "</tr>")
    parts.append("</table></div>")
    return parts
