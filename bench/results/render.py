"""A renderer per format, each taking any ``tables.Table``: ``rich`` (the terminal), ``markdown``,
``csv``, ``latex`` (booktabs, every text escaped) and ``html`` (the ``table`` macro of
templates/blocks.html.j2, autoescaped by Jinja2). Every cell's text is the column's (``Column.text``,
through the one number formatter ``tables.fmt``), so the formats differ in markup only:

- headings: the column's ``name`` in Markdown, CSV and HTML (what scripts and tests read), its
  ``header`` with units in the terminal and LaTeX;
- after the table: its legend, then its notes (a ``Warn`` in the warning style);
- CSV is for machines: a cell holding a plain number or text is written raw (None as empty), any
  other cell as its text;
- escaping: Markdown replaces '|' (which would split a cell) and line breaks; the terminal shows
  text, never console markup; LaTeX escapes its specials; HTML is escaped by the template."""

from __future__ import annotations

import csv as _csv
import functools
import io
import re
from importlib import resources

from .tables import Table, Warn

TONES = {"better": "green", "worse": "red", "base": "bold"}  # a cell's tone in the terminal


def titled(prefix: str, title: str, sep: str = ": ") -> str:
    """A table's title after its document's name ('m: paired statistics ...'): its first letter lower
    case, unless it starts an acronym."""
    return f"{prefix}{sep}{title[:1].lower() + title[1:] if title[1:2].islower() else title}"


# ---- Markdown ------------------------------------------------------------------------------------

def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def markdown(table: Table, level: int = 2) -> str:
    """The table under a heading of ``level``, its legend and notes as paragraphs; ends with a blank line."""
    lines = [f"{'#' * level} {_md(table.title)}", "", "| " + " | ".join(_md(c.name) for c in table.columns) + " |",
             "|---" * len(table.columns) + "|"]
    lines += ["| " + " | ".join(_md(t) for t in row) + " |" for row in table.texts()]
    lines.append("")
    for text in [table.legend, *table.notes]:
        if text:
            lines += [_md(text), ""]
    return "\n".join(lines) + "\n"


def markdown_document(title: str, parts: list, intro: list[str] = ()) -> str:
    """'# title', the intro lines as paragraphs, then every part: a Table (at level 2) or a (Table, level)."""
    out = [f"# {_md(title)}", ""]
    out += [w for line in intro for w in (_md(line), "")]
    text = "\n".join(out) + "\n"
    for part in parts:
        table, level = part if isinstance(part, tuple) else (part, 2)
        text += markdown(table, level)
    return text.rstrip("\n") + "\n"


# ---- CSV -----------------------------------------------------------------------------------------

def csv(table: Table) -> str:
    """A header of the column names, then one line per row (Excel's dialect, as csv writes it)."""
    buf = io.StringIO()
    w = _csv.writer(buf)
    w.writerow(table.names)
    for row in table.rows:
        w.writerow([v if v is None or isinstance(v, (str, int, float)) else c.text(row)
                    for c in table.columns for v in [c.value(row)]])
    return buf.getvalue()


# ---- the terminal --------------------------------------------------------------------------------

def rich(console, table: Table, title: str | None = None) -> None:
    """The table (cells folded, never cut, on a narrow terminal), then its legend and notes."""
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=title or table.title, title_justify="left")
    for c in table.columns:
        t.add_column(c.heading, justify=c.align, overflow="fold")
    for row in table.rows:
        t.add_row(*(Text(c.text(row), style=TONES.get(c.tone_of(row) or "", "")) for c in table.columns))
    console.print(t)
    for text in [table.legend, *table.notes]:
        if text:
            console.print(text, style="yellow" if isinstance(text, Warn) else None, highlight=False, markup=False)


# ---- LaTeX ---------------------------------------------------------------------------------------

PREAMBLE = "% needs \\usepackage{booktabs} and \\usepackage{graphicx} (wide tables are scaled to \\textwidth)"
WIDE = 8  # tables with more columns than this are scaled to the text width
SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
           ">": r"\textgreater{}", "*": r"$^{*}$", "±": r"$\pm$", "†": r"$^{\dagger}$", "×": r"$\times$",
           "≤": r"$\leq$", "≥": r"$\geq$", "…": r"\dots{}", "–": r"\textendash{}", "—": r"\textemdash{}", "−": r"$-$",
           "→": r"$\rightarrow$", "τ": r"$\tau$", "α": r"$\alpha$", "√": r"$\surd$", "Δ": r"$\Delta$",
           "\n": " ", "\r": " "}
_PATTERN = re.compile("|".join(re.escape(k) for k in SPECIAL))


def tex(value) -> str:
    """Plain text -> LaTeX that typesets as the same text (specials escaped; marks and ± as math)."""
    return _PATTERN.sub(lambda m: SPECIAL[m.group(0)], str(value))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def latex(table: Table, caption: str | None = None, label: str | None = None) -> str:
    """One table environment: caption (default: the title), label (default: the caption's slug),
    booktabs rules, the headers and cells escaped, the legend and notes as a footnote under the rules."""
    caption = caption or table.title
    spec = "".join("l" if i == 0 or c.align == "left" else "r" for i, c in enumerate(table.columns))
    body = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule", " & ".join(tex(c.heading) for c in table.columns) + r" \\",
            "\\midrule", *(" & ".join(tex(t) for t in row) + r" \\" for row in table.texts()), "\\bottomrule",
            "\\end{tabular}"]
    if len(table.columns) > WIDE:
        body = ["\\resizebox{\\textwidth}{!}{%", *body, "}"]
    lines = ["\\begin{table}[htbp]", "\\centering", f"\\caption{{{tex(caption)}}}",
             f"\\label{{tab:{label or slug(caption)}}}", *body]
    foot = [t for t in [table.legend, *table.notes] if t]
    if foot:
        lines += ["\\par\\smallskip", "{\\footnotesize", *(tex(n) + r"\par" for n in foot), "}"]
    return "\n".join(lines + ["\\end{table}", ""]) + "\n"


# ---- HTML ----------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def environment():
    """The Jinja2 environment of the report's templates (package data, read with importlib.resources so
    a wheel carries them), autoescaped: every text reaches the page escaped."""
    import jinja2

    def load(name: str) -> str:
        return resources.files("bench.results").joinpath("templates", name).read_text(encoding="utf-8")

    env = jinja2.Environment(loader=jinja2.FunctionLoader(load), autoescape=True, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.tests["table"] = lambda v: isinstance(v, Table)
    env.tests["warn"] = lambda v: isinstance(v, Warn)
    return env


def html(table: Table, heading: bool = True) -> str:
    """The table as the report shows it (an <h3> title unless ``heading`` is false, legend, notes)."""
    return str(environment().get_template("blocks.html.j2").module.table(table, heading))
