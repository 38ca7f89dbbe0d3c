"""The tables that compare groups (bench/results/tables/comparisons.py), each built from its statistic's
typed rows: the paired table from stats.paired.Paired (a new field is one Column), the rankings at equal
budgets, learning-rate robustness with its failed grid points and l_0 basis, and the scaling laws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.results import render
from bench.results.records import Record
from bench.results.stats.laws import fit_laws
from bench.results.stats.lr import lr_curves
from bench.results.stats.paired import compare
from bench.results.stats.views import three_views
from bench.results.tables import Column, Table, Warn
from bench.results.tables.comparisons import (COMPUTE_TITLE, PAIRED_COLUMNS, law_tables, laws_markdown, lr_tables,
                                              paired_table, view_table)

from ..support import CROSS, RUNGS, fast, ladder, three_cells


def rec(act, seed, loss, lr=None, status="ok", init=None, error=None, vocab=256):
    metrics = {"val_loss": loss, "val_ppl": math.exp(loss)} if status == "ok" else {}
    if init is not None:
        metrics["init_val_loss"] = init
    return Record.from_dict({"id": f"nano-{act}-pre-lr{lr}-s{seed}", "scale": "nano", "activation": act, "norm": "pre",
                             "seed": seed, "status": status, "metrics": metrics, "error": error,
                             "data": {"vocab_size": vocab, "unigram_ppl": 1e6},
                             "config": {"seed": seed, "train": {"lr": lr} if lr else {}},
                             "started": f"2026-01-01T00:00:{seed:02d}"})


def test_the_paired_table_reads_the_typed_comparisons():
    recs = [rec("base", s, v) for s, v in enumerate((3.00, 2.97, 3.04))] + \
        [rec("better", s, v) for s, v in enumerate((2.80, 2.78, 2.83))] + [rec("one", 0, 2.5)]
    comps = list(compare(recs).values())
    t = paired_table(comps)
    assert t.rows == tuple(comps) and t.names[-2:] == ["result", "verdict"]  # the rows: the Paired objects
    rows = {v["activation"]: v for v in t.values()}
    assert rows["base"]["result"] == "baseline" and rows["base"]["delta_loss"] is None
    assert rows["better"]["result"] == "better *" and rows["better"]["n"] == "3 pairs"
    assert rows["better"]["delta_loss"] == pytest.approx(np.mean([-0.2, -0.19, -0.21]))
    assert rows["one"]["n"] == "1 vs 3 !" and rows["one"]["result"] == "undecided (n<3)"
    assert rows["one"]["verdict"].startswith("undecided: ") and "seeds would decide" in rows["one"]["verdict"]
    assert rows["better"]["verdict"].startswith("better: ") and rows["base"]["verdict"] is None
    assert rows["one"]["effect"] is None and rows["better"]["effect"].startswith("d_z=")
    assert [t.column("result").tone_of(c) for c in comps] == ["base", "better", None]
    assert isinstance(t.notes[0], Warn) and "rest on fewer than 3 seeds (one / pre (nano))" in t.notes[0]
    assert paired_table([c for c in comps if c.is_baseline]) is None  # nothing but baselines: no table
    # a new field of the comparison is one Column entry, in every format
    extended = Table(t.title, (*PAIRED_COLUMNS, Column("seeds_needed", get=lambda c: 7 if c.test else None)),
                     t.rows)
    assert "| seeds_needed |" in render.markdown(extended) and "| 7 |" in render.markdown(extended)


def test_a_view_table_says_who_reached_the_budget():
    recs, curves = three_cells()
    views = three_views(recs, curves, {"seconds": 150.0})
    t = view_table(views["seconds"], views["steps"])
    assert t.title == "Ranking at equal time (training seconds)"
    assert t.notes == ("At equal time (training seconds): 2 group(s) reached the budget with every seed; not "
                       "reached by c / pre (nano: 0/1 seeds). A group that did not reach it is not ranked there, "
                       "and no other group's rank change is counted against it.",)
    assert "| nano | 150.0 s | - | c | pre | - | - | 0/1 | 1 |" in render.markdown(t)
    rows = {v["activation"]: v for v in t.values()}
    assert rows["a"]["val_loss"] == pytest.approx(fast(150)) and rows["a"]["rank_at_steps"] == 2


def test_lr_tables_list_failed_points_and_the_basis_of_l0():
    recs = [rec("swiglu", s, loss, lr, init=5.70 + 0.02 * s) for lr, loss in ((1e-3, 3.0), (3e-3, 3.5))
            for s in (0, 1)]
    recs += [rec("swiglu", s, 0.0, 3e-4, status="oom", error="CUDA out of memory. Tried 2 GiB\nmore") for s in (0, 1)]
    lr, grid = lr_tables(lr_curves(recs))
    (row,) = lr.values()
    assert row["failed_at"] == "0.0003" and row["lrs"] == 3 and row["l0"] == "5.7100" and row["note"] is None
    assert [v["lr"] for v in grid.values()] == [3e-4, 1e-3, 3e-3]
    assert grid.texts()[0][-1].startswith("failed (oom 2/2)") and grid.texts()[0][5] == "-"
    assert any(n.startswith("Failed: 1 grid point(s)") and "lr 0.0003" in n for n in lr.notes)
    # without a measured loss at init, l_0 = ln V, said in the row and under the table
    recs = [rec("swiglu", s, loss, lr) for lr, loss in ((1e-3, 3.0), (3e-3, 3.5)) for s in (0, 1)]
    lr, _ = lr_tables(lr_curves(recs))
    (row,) = lr.values()
    assert row["l0"] == f"{math.log(256):.4f} (ln V)" and "l_0 = ln V" in row["note"]
    assert lr.notes[0].startswith("l_0 is ln V for 1 group(s) (swiglu / pre (nano))")
    assert lr_tables(lr_curves([rec("swiglu", 0, 3.0, 1e-3)])) is None  # one LR: no sweep


def test_the_law_tables_carry_both_laws_the_prediction_and_the_known_crossover():
    tables = law_tables(fit_laws(ladder(), predict=1e7))
    assert [t.title for t in tables] == ["Scaling laws", "Predicted at N = 1e+07", "Crossovers", COMPUTE_TITLE]
    md = laws_markdown(tables)
    assert md.startswith("## Scaling laws\n") and f"### {COMPUTE_TITLE}" in md and "### Crossovers" in md
    assert "| swiglu:pre | N |" in md and "| swiglu:pre | C |" in md
    (cross,) = tables[2].values()
    assert cross["crossover N"] == pytest.approx(CROSS, rel=0.25) and cross["lower beyond"] == "swiglu:pre"
    predicted = {v["group"]: v for v in tables[1].values()}
    assert predicted["swiglu:pre"]["note"] == "extrapolated" and predicted["swiglu:pre"]["x largest rung"] == 10
    skipped = law_tables(fit_laws([r for r in ladder() if r.params.non_embedding == int(RUNGS[0])]))
    assert skipped[0].rows == () and skipped[0].notes[0].startswith("not fitted: swiglu:pre: 1 rung(s)")
