"""The report's comparison sections: paired statistics, the three views and where their
rankings disagree, learning-rate robustness, and the figures that compare cells."""

from __future__ import annotations

from .figures import compare as F
from .compare_tables import (PAIRED_COLUMNS, RANK_COLUMNS, VIEW_COLUMNS, VIEWS_LEGEND, few_seed_warning,
                             grid_table, lr_table, paired_table, rank_table, view_table, views_for)
from .html import e, figure_html, img, note, table
from .lr import GRID_COLUMNS, LR_COLUMNS, LR_LEGEND, lr_notes
from .paired import LEGEND as PAIRED_LEGEND
from .columns import cost_note
from .views import AXES, AXIS_TITLES, disagreements, reached_note


def _result_class(text: str) -> str:
    return "better" if text.startswith("better") else "worse" if text.startswith("worse") else \
        "base" if text == "baseline" else ""


def paired_section(records, baseline=None) -> list[str]:
    rows = [[*r[:-1], (r[-1], _result_class(r[-1]))] for r in paired_table(records, baseline)]
    parts = ["<h3>Paired statistics against the baseline (final validation loss)</h3>",
             table(list(PAIRED_COLUMNS), rows), note(PAIRED_LEGEND, "legend")]
    if (w := few_seed_warning(records, baseline)):
        parts.append(note(w, "warn"))
    return parts


def views_section(records, curves: dict, at=None) -> list[str]:
    """Each group's rank at equal steps, FLOPs and time, where they disagree, and one table per view."""
    parts = ["<h2>Equal steps, equal compute, equal time</h2>"]
    if not curves:
        return parts + [note("No validation curves (metrics.csv) beside the records: no views.")]
    views = views_for(records, curves, at)
    rows, notes = rank_table(views)
    parts.append(table(list(RANK_COLUMNS), [[*r[:-1], (r[-1], "worse" if r[-1] else "")] for r in rows]))
    parts += [note(n) for n in notes]
    parts.append(figure_html("rank of each group in each view", F.fig_ranks, disagreements(views)))
    parts.append(note(VIEWS_LEGEND, "legend"))
    for axis in AXES:
        parts += [f"<h3>Ranking at {AXIS_TITLES[axis]}</h3>",
                  table(list(VIEW_COLUMNS), view_table(views[axis], views["steps"]))]
        parts += [note(n) for n in (reached_note(views[axis]),) if n]
        if axis == "seconds" and (n := cost_note(records)):  # equal time rests on the measured speed
            parts.append(note(n, "note warn"))
    return parts


def lr_section(records) -> list[str]:
    rows, curves = lr_table(records)
    if not rows:
        return []
    return ["<h2>Learning-rate robustness</h2>", table(list(LR_COLUMNS), rows), note(LR_LEGEND, "legend"),
            *(note(n, "note warn") for n in lr_notes(curves)),
            figure_html("final validation loss against learning rate", F.fig_lr, curves),
            "<h3>Every grid point</h3>", table(list(GRID_COLUMNS), grid_table(curves))]


def figures_section(records, curves: dict) -> list[str]:
    """The figures that compare cells (mean over seeds)."""
    parts = ["<h2>Comparisons across cells</h2>",
             note("Seed repeats are averaged. Per-cell probe figures are further down, collapsed.")]
    empty = []
    for title, fn, args in (
            ("Validation loss with seed bands", F.fig_loss_bands, (records, curves)),
            ("Per-layer activation variance at the end of training, by scheme (GPAS Fig. 1/5)",
             F.fig_act_var_by_scheme, (records,)),
            ("GPAS gate trajectories by scheme", F.fig_gpas_gates, (records,)),
            ("Effective rank per FFN matrix, by activation (PolyCom Fig. 6)", F.fig_effective_rank, (records,)),
            ("Layer cosine similarity, side by side (PolyCom Fig. 7)", F.fig_layer_cosine, (records,))):
        try:
            b64 = fn(*args)
        except Exception as exc:  # noqa: BLE001 - a figure that fails to draw must not lose the report
            parts += [f"<h3>{e(title)}</h3>", note(f"({title} could not be drawn: {type(exc).__name__}: {exc})")]
            continue
        if b64 is None:
            empty.append(title)
        else:
            parts += [f"<h3>{e(title)}</h3>", img(b64, title)]
    if empty:
        parts.append(note("Nothing to plot (no probes or curves in these records) for: " + "; ".join(empty) + "."))
    return parts
