"""The leaderboard as LaTeX for a paper: one booktabs table (\\toprule / \\midrule / \\bottomrule) per
section of the markdown leaderboard, with the same columns, the confidence intervals and the
significance marks; legends, the MFU basis and the other notes as each table's footnote. Every text is
escaped: cell ids, names with underscores and percent signs compile as written."""

from __future__ import annotations

import re

from . import compare_tables as ct
from .columns import cost_note, header
from .leaderboard import (fmt_cell, legend, long_columns, long_rows, notes, pivot_cell, pivots, resolve_at,
                          warning_lines)
from .lr import LR_COLUMNS, LR_LEGEND
from .paired import LEGEND as PAIRED_LEGEND
from .records import Record
from .views import AXIS_TITLES, reached_note

PREAMBLE = "% needs \\usepackage{booktabs} and \\usepackage{graphicx} (wide tables are scaled to \\textwidth)"
WIDE = 8  # tables with more columns than this are scaled to the text width
TEXT_COLUMNS = {"id", "scale", "activation", "norm", "status", "result", "test", "budget", "changes", "note",
                "ci95", "effect", "precision", "plugin", "diverged_at", "shared", "n", "seeds", "cell", "config"}
_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}", "*": r"$^{*}$", "±": r"$\pm$", "†": r"$^{\dagger}$", "×": r"$\times$",
            "≤": r"$\leq$", "≥": r"$\geq$", "…": r"\dots{}", "–": r"\textendash{}", "—": r"\textemdash{}", "−": r"$-$",
            "→": r"$\rightarrow$", "τ": r"$\tau$", "α": r"$\alpha$", "√": r"$\surd$", "Δ": r"$\Delta$"}
_PATTERN = re.compile("|".join(re.escape(k) for k in _SPECIAL))


def tex(value) -> str:
    """Plain text -> LaTeX that typesets as the same text (specials escaped; marks and ± as math)."""
    return _PATTERN.sub(lambda m: _SPECIAL[m.group(0)], str(value))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def table(caption: str, columns, rows, footnotes=(), label: str | None = None, headers=None) -> list[str]:
    """One table environment: caption, booktabs rules, the rows' texts escaped, footnotes below."""
    columns = list(columns)
    spec = "".join("l" if i == 0 or c in TEXT_COLUMNS else "r" for i, c in enumerate(columns))
    head = [tex(h) for h in (headers or columns)]
    body = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(head) + r" \\", "\\midrule",
            *(" & ".join(tex(c) for c in row) + r" \\" for row in rows), "\\bottomrule", "\\end{tabular}"]
    if len(columns) > WIDE:
        body = ["\\resizebox{\\textwidth}{!}{%", *body, "}"]
    lines = ["\\begin{table}[htbp]", "\\centering", f"\\caption{{{tex(caption)}}}",
             f"\\label{{tab:{label or _slug(caption)}}}", *body]
    if footnotes:
        lines += ["\\par\\smallskip", "{\\footnotesize", *(tex(n) + r"\par" for n in footnotes), "}"]
    return lines + ["\\end{table}", ""]


def pivot_tables(records: list[Record], title: str, baseline=None) -> list[str]:
    lines = []
    piv = pivots(records, baseline)
    warnings = warning_lines(records)
    for i, (scale, p) in enumerate(piv.items()):
        rows = [[act, *(pivot_cell(p["cells"].get((act, n)), p["comparisons"].get((act, n))) for n in p["cols"])]
                for act in p["rows"]]
        last = i == len(piv) - 1
        lines += table(f"{title}, {scale}: final validation PPL (mean ± 95% CI over seeds)",
                       ["activation", *p["cols"]], rows, [legend(p, scale), *(warnings if last else [])],
                       label=_slug(f"{title}-{scale}-ppl"))
    return lines


def comparison_tables(records: list[Record], title: str, curves: dict | None, baseline=None, at=None) -> list[str]:
    """The paired statistics, the views and the LR table: the sections ``compare_tables`` gives markdown."""
    lines = []
    rows = ct.paired_table(records, baseline)
    if any(r[-1] != "baseline" for r in rows):
        warn = ct.few_seed_warning(records, baseline)
        lines += table(f"{title}: paired statistics against the baseline (final validation loss)",
                       ct.PAIRED_COLUMNS, rows, [PAIRED_LEGEND, *([warn] if warn else [])])
    if curves:
        views = ct.views_for(records, curves, at)
        if at:
            v = views[at[0]]
            lines += table(f"{title}: ranking at {AXIS_TITLES[at[0]]}", ct.VIEW_COLUMNS,
                           ct.view_table(v, views["steps"]), [n for n in (reached_note(v),) if n])
        rows, view_notes = ct.rank_table(views)
        lines += table(f"{title}: rankings at equal steps, equal compute and equal time", ct.RANK_COLUMNS, rows,
                       [*view_notes, ct.VIEWS_LEGEND])
    rows, _ = ct.lr_table(records)
    if rows:
        lines += table(f"{title}: learning-rate robustness", LR_COLUMNS, rows, [LR_LEGEND])
    return lines


def to_latex(records: list[Record], title: str, baseline=None, target: float | None = None,
             curves: dict | None = None, at=None) -> str:
    """The leaderboard's sections as LaTeX tables (see the module docstring), in the markdown's order."""
    at = resolve_at(at)
    ct.check_at(records, curves, at)
    lines = [f"% {title}: leaderboard", PREAMBLE, ""]
    lines += pivot_tables(records, title, baseline)
    lines += comparison_tables(records, title, curves, baseline, at)
    cols = long_columns(target, records)
    rows = [[fmt_cell(row, c) for c in cols] for row in long_rows(records, target, curves)]
    lines += table(f"{title}: all cells by validation PPL", cols, rows,
                   notes(records, target) + [n for n in (cost_note(records),) if n],
                   headers=[header(c) for c in cols])
    return "\n".join(lines)
