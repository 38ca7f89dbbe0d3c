"""Tables as data, as rich.table.Table keeps them: ``Column``s say what each column holds and how its
cells read, rows are whatever objects the columns read (a typed statistic such as stats.paired.Paired,
a record's row), and the renderers in bench.results.render turn any ``Table`` into the terminal,
Markdown, CSV, LaTeX or the report's HTML. Every cell reads through the one number formatter, ``fmt``.
A table is built once per command and rendered as often as needed; a new column is one ``Column``
entry in its table's list.

The modules here build each table: ``leaderboard`` (the pivots, the cells with their costs, and the
leaderboard's sections), ``comparisons`` (paired statistics, equal-budget rankings, learning-rate
robustness, scaling laws) and ``folders`` (two result folders side by side)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import math


class Estimate(float):
    """A number that was estimated rather than measured: it reads '~x'."""


def fmt(value, spec: str = "") -> str:
    """The one way a value reads as text, in every table and format:

    - None reads "-", a text reads as itself, a bool "yes" / "no";
    - a tuple is an interval, "[lo, hi]", each end formatted with ``spec``;
    - an ``Estimate`` reads "~" and its number;
    - inf, -inf and nan read "inf", "-inf" and "nan", whatever the spec;
    - spec "pct": a fraction as a percentage with two decimals ("12.50%");
    - any other spec is Python's format spec (".3f", "+.4f", ".3g", ",.0f");
    - no spec: an integer as is, a float to 4 significant digits below 100 and with thousands
      separators and one decimal from 100 on ("0.01234", "12.35", "1,234.5")."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return "[" + ", ".join(fmt(v, spec) for v in value) + "]"
    if isinstance(value, Estimate):
        return "~" + fmt(float(value), spec)
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if spec == "pct":
        return f"{100 * value:.2f}%"
    if spec:
        return format(value, spec)
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return str(value)


class Warn(str):
    """A note that warns a reader: shown in the warning style (yellow in the terminal, 'warn' on the page)."""


@dataclass(frozen=True)
class Column:
    """One column: its machine ``name`` (the heading of CSV, Markdown and HTML, which scripts and
    tests read), its ``header`` for a reader, with units (the terminal's and LaTeX's heading; the name
    when empty), how a row gives its value (``get``; default: the row's ``name`` key or attribute), how
    the value reads (``fmt``: a spec of ``render.fmt``, or value -> text), its alignment, and
    optionally the ``tone`` of a cell (row -> 'better' / 'worse' / 'base' or None: colour only)."""

    name: str
    header: str = ""
    get: Callable[[Any], Any] | None = None
    fmt: str | Callable[[Any], str] = ""
    align: str = "right"
    tone: Callable[[Any], str | None] | None = None

    @property
    def heading(self) -> str:
        return self.header or self.name

    def value(self, row) -> Any:
        if self.get is not None:
            return self.get(row)
        return row.get(self.name) if isinstance(row, dict) else getattr(row, self.name, None)

    def text(self, row) -> str:
        v = self.value(row)
        return self.fmt(v) if callable(self.fmt) else fmt(v, self.fmt)

    def tone_of(self, row) -> str | None:
        return self.tone(row) if self.tone is not None else None


@dataclass(frozen=True)
class Table:
    """A titled table: its columns, its rows, a legend that says how to read it, and notes (lines a
    reader must weigh it by; a ``Warn`` is a warning)."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple = ()
    legend: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", tuple(self.rows))
        object.__setattr__(self, "notes", tuple(n for n in self.notes if n))
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.title!r} names a column twice: {names}")

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def without(self, *names: str) -> "Table":
        """The same table without the named columns (nothing is recomputed)."""
        return dataclasses.replace(self, columns=tuple(c for c in self.columns if c.name not in names))

    def values(self) -> list[dict]:
        """Every row as {column name: value}: the table as data."""
        return [{c.name: c.value(row) for c in self.columns} for row in self.rows]

    def texts(self) -> list[list[str]]:
        """Every cell as the text every format shows."""
        return [[c.text(row) for c in self.columns] for row in self.rows]

