"""Every renderer (bench/results/render.py) on the same tables: the same cells in every format, and
hostile texts (markup, LaTeX specials, quotes, pipes, line breaks) reaching each format as text, over
many random strings rather than one hand-picked case."""

from __future__ import annotations

import csv
import io
import random
import re
from html.parser import HTMLParser

import pytest
from rich.console import Console

from bench.results import render
from bench.results.render import SPECIAL, tex
from bench.results.tables import Column, Estimate, Table, Warn

from .support import latex_cells, untex

HOSTILE = ["<script>alert('x')</script>&amp;", "a|b", "two\nlines", "50% of $x_1$ & {y} #2 ~^\\", '"quoted", comma',
           "[bold red]markup[/]", "=SUM(A1:A2)", "ümlaut ± † * → τ"]
ALPHABET = list(SPECIAL) + list("<>&\"'|[]/=,;:.-() ab01±†*\t") + ["\r\n"]


def table(names, notes=("a note", Warn("a warning"))):
    """One row per name: the name as text, and numbers that read differently per column."""
    rows = [{"name": n, "loss": 1.5 + i, "ci": (0.1 * i, 0.2), "secs": Estimate(8.0)} for i, n in enumerate(names)]
    columns = [Column("name", "name (text)", align="left", tone=lambda r: "better" if r["loss"] < 2 else None),
               Column("loss", "loss (nats)", fmt=".3f"), Column("ci", fmt="+.2f"), Column("secs")]
    return Table("Title & <more>", columns, rows, "the legend: * / † marks", notes)


def random_texts(seed: int, n: int = 200) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 25))) for _ in range(n)]


# ---- one table, every format: the same cells ----------------------------------------------------

def test_every_format_shows_the_same_cell_texts():
    t = table(["swiglu", "powlu"])
    cells = t.texts()
    assert cells == [["swiglu", "1.500", "[+0.00, +0.20]", "~8"], ["powlu", "2.500", "[+0.10, +0.20]", "~8"]]
    md = render.markdown(t)
    for row in cells:
        assert "| " + " | ".join(row) + " |" in md
    assert md.startswith("## Title & <more>\n\n| name | loss | ci | secs |\n|---|---|---|---|\n")
    assert "\nthe legend: * / † marks\n\na note\n\na warning\n" in md
    got = list(csv.reader(io.StringIO(render.csv(t))))
    assert got[0] == ["name", "loss", "ci", "secs"]
    assert got[1] == ["swiglu", "1.5", "[+0.00, +0.20]", "8.0"]  # plain numbers raw, the rest as text
    html = render.html(t)
    for row in cells:
        for c in row:
            assert f">{c}</td>" in html
    assert '<td class="better l">swiglu</td>' in html and '<td class="l">powlu</td>' in html
    assert '<th class="l" title="name (text)">name</th>' in html and '<p class="note warn">a warning</p>' in html
    tex_text = render.latex(t)
    assert "name (text) & loss (nats) & ci & secs \\\\" in tex_text  # LaTeX shows the headers with units
    assert "swiglu & 1.500 & [+0.00, +0.20] & \\textasciitilde{}8 \\\\" in tex_text
    assert "\\begin{tabular}{lrrr}" in tex_text and "\\label{tab:title-more}" in tex_text
    out = io.StringIO()
    render.rich(Console(file=out, width=200, color_system=None), t)
    text = out.getvalue()
    assert "loss (nats)" in text and "[+0.00, +0.20]" in text and "a warning" in text and "~8" in text


def test_a_wide_latex_table_is_scaled_and_the_terminal_folds_rather_than_cuts():
    t = Table("wide", [Column(f"column_{i}") for i in range(9)], [{f"column_{i}": "x" * 30 for i in range(9)}])
    assert "\\resizebox{\\textwidth}{!}{%" in render.latex(t)
    out = io.StringIO()
    render.rich(Console(file=out, width=80, color_system=None), t)
    assert "…" not in out.getvalue() and out.getvalue().count("x") == 9 * 30


# ---- hostile texts --------------------------------------------------------------------------------

def test_latex_escaping_round_trips_over_random_texts():
    for s in random_texts(0, 500):
        assert untex(tex(s)) == s.replace("\r", " ").replace("\n", " ")
    assert tex("relu2_glu 5% a&b #1 {x} ~^ \\") == (r"relu2\_glu 5\% a\&b \#1 \{x\} \textasciitilde{}"
                                                    r"\textasciicircum{} \textbackslash{}")


class Cells(HTMLParser):
    """The text of every <td>, as a browser would show it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.cells, self.open, self.tags = [], False, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "td":
            self.open = True
            self.cells.append("")

    def handle_endtag(self, tag):
        self.open = self.open and tag != "td"

    def handle_data(self, data):
        if self.open:
            self.cells[-1] += data


@pytest.mark.parametrize("seed", range(3))
def test_hostile_texts_reach_every_format_as_text(seed):
    names = HOSTILE + random_texts(seed, 60)
    t = table(names, notes=tuple(names[:3]))
    # Markdown: one table row per row, as many cells as columns; a pipe is escaped, a line break a space
    md = render.markdown(t).split("\n\n")[1].splitlines()[2:]
    assert len(md) == len(names)
    for line, name in zip(md, names):
        cells = re.split(r"(?<!\\)\|", line)[1:-1]
        assert len(cells) == 4
        assert cells[0].strip() == name.replace("|", "\\|").replace("\r\n", " ").replace("\n", " ").replace(
            "\r", " ").strip()
    # CSV: read back exactly
    got = list(csv.reader(io.StringIO(render.csv(t), newline="")))
    assert [row[0] for row in got[1:]] == names
    # LaTeX: every cell escaped, as many cells as the column spec, and back to the text
    lx = render.latex(t)
    rows = latex_cells(lx)
    assert len(rows) == len(names) and all(len(r) == 4 for r in rows)
    assert [untex(r[0]) for r in rows] == [n.replace("\r", " ").replace("\n", " ").strip() for n in names]
    # HTML: no element a name could open; every name back as the cell's text
    page = render.html(t)
    parser = Cells()
    parser.feed(page)
    assert parser.tags.count("td") == 4 * len(names) and set(parser.tags) <= {"h3", "div", "table", "tr", "th", "td",
                                                                             "p"}
    assert parser.cells[::4] == names
    # the terminal: markup in a name is shown, not applied
    out = io.StringIO()
    render.rich(Console(file=out, width=400, color_system=None), t)
    assert "[bold red]markup[/]" in out.getvalue()


def test_titles_inside_a_document_name():
    assert render.titled("m", "Paired statistics") == "m: paired statistics"
    assert render.titled("m", "PPL by scale", ", ") == "m, PPL by scale"  # an acronym keeps its case
    doc = render.markdown_document("m", [table(["a"]), (table(["b"]), 3)], ["intro | line"])
    assert doc.startswith("# m\n\nintro \\| line\n\n## Title") and "\n### Title" in doc and doc.endswith(
        "a warning\n")
