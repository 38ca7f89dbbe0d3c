"""The table model (bench/results/tables/__init__.py): columns read rows through ``get`` and read as text
through the one number formatter, ``fmt``, whose rules are checked here one by one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from bench.results.tables import Column, Estimate, Table, Warn, fmt


@pytest.mark.parametrize("value, spec, text", [
    (None, "", "-"), (None, ".3f", "-"),
    ("not reached", ".3f", "not reached"),  # a text reads as itself, whatever the spec
    (True, "", "yes"), (False, ".3f", "no"),
    ((0.1234, -0.5), "+.2f", "[+0.12, -0.50]"),  # an interval
    ((1e5, 2.5e6), ".3g", "[1e+05, 2.5e+06]"),
    (Estimate(8.0), "", "~8"), (Estimate(1234.5), "", "~1,234.5"), (Estimate(3.14159), ".2f", "~3.14"),
    (math.inf, ".3g", "inf"), (-math.inf, "+.4f", "-inf"), (math.nan, ".3f", "nan"),
    (0.125, "pct", "12.50%"), (0.0055248, "pct", "0.55%"),
    (3.14159, ".3f", "3.142"), (-0.2, "+.4f", "-0.2000"), (0.000279436, ".3g", "0.000279"),
    (1810.0, ",.0f", "1,810"), (14096, ",.0f", "14,096"), (1234567, ",", "1,234,567"),
    (0.0123456, "", "0.01235"), (12.3456, "", "12.35"), (99.99, "", "99.99"), (100.0, "", "100.0"),
    (1234.5, "", "1,234.5"), (-250.0, "", "-250.0"), (7, "", "7"), (123456, "", "123456"),
])
def test_the_formatter_rules(value, spec, text):
    assert fmt(value, spec) == text


def test_numpy_numbers_format_as_numbers():
    np = pytest.importorskip("numpy")
    assert fmt(np.float64(0.5), ".2f") == "0.50" and fmt(np.float64(0.5)) == "0.5"
    assert fmt(np.int64(3), ",") == "3" and fmt(np.int64(12)) == "12"


@dataclass
class Row:
    name: str
    loss: float | None


def test_columns_read_keys_attributes_or_their_getter():
    by_key, by_attr = {"name": "a", "loss": 2.5}, Row("b", None)
    name, loss = Column("name", align="left"), Column("loss", "loss (nats)", fmt=".3f")
    assert (name.value(by_key), name.value(by_attr), loss.text(by_key), loss.text(by_attr)) == ("a", "b", "2.500", "-")
    assert loss.heading == "loss (nats)" and name.heading == "name"
    doubled = Column("double", get=lambda r: 2 * r["loss"], fmt=lambda v: f"{v:g} nats")
    assert doubled.text(by_key) == "5 nats"
    toned = Column("loss", get=lambda r: r.loss, tone=lambda r: "better" if r.loss is not None else None)
    assert toned.tone_of(Row("c", 1.0)) == "better" and toned.tone_of(by_attr) is None and name.tone_of(by_attr) is None


def test_a_table_holds_its_rows_drops_columns_and_gives_values():
    t = Table("t", [Column("name"), Column("loss", fmt=".2f")], [Row("a", 1.0), Row("b", None)], "how to read it",
              ["a note", None, Warn("a warning"), ""])
    assert t.names == ["name", "loss"] and t.notes == ("a note", "a warning")  # empty notes are no notes
    assert isinstance(t.notes[1], Warn) and not isinstance(t.notes[0], Warn)
    assert t.values() == [{"name": "a", "loss": 1.0}, {"name": "b", "loss": None}]
    assert t.texts() == [["a", "1.00"], ["b", "-"]]
    narrow = t.without("loss")
    assert narrow.names == ["name"] and narrow.rows == t.rows and t.names == ["name", "loss"]  # a view, not a copy
    assert t.column("loss").fmt == ".2f"
    with pytest.raises(ValueError, match="names a column twice"):
        Table("t", [Column("a"), Column("a")])
