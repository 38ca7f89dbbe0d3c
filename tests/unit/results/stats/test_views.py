"""Equal-steps, equal-compute and equal-time views (bench/results/stats/views.py) on synthetic cells whose
answers are known: a slow cell that wins at equal steps and loses at equal time, budgets no cell reaches,
log-x interpolation, estimated seconds, and a cell that drops out of a view moving no other's rank."""

from __future__ import annotations

import math

import pytest

from bench.results.curves import cumulative
from bench.results.stats.views import cell_curve, disagreements, interpolate, parse_budget, three_views, view

from ..support import STEPS, csv_curve, fast, record, slow, three_cells


# ---- views: a slow cell that wins at equal steps and loses at equal time ---------------------------

@pytest.fixture
def two_cells():
    recs = [record("fast", loss=fast(200), fpb=1e9, train_seconds=200.0),
            record("slow", loss=slow(200), fpb=2e9, train_seconds=400.0)]
    curves = {recs[0].id: csv_curve([(s, fast(s)) for s in STEPS], 1.0),
              recs[1].id: csv_curve([(s, slow(s)) for s in STEPS], 2.0)}
    return recs, curves


def test_slow_cell_wins_at_equal_steps_and_loses_at_equal_time(two_cells):
    recs, curves = two_cells
    views = three_views(recs, curves)
    by = {axis: {g.group[0]: g for g in v.groups} for axis, v in views.items()}
    # equal steps: both at 200 steps (the default budget: the largest every cell reached)
    assert views["steps"].budgets == {"nano": 200}
    assert by["steps"]["slow"].loss == pytest.approx(slow(200)) and by["steps"]["slow"].rank == 1
    # equal time: 200 s = the fast cell's end = the slow cell's step 100 (between validations 80 and 120)
    assert views["seconds"].budgets == {"nano": 200.0}
    assert by["seconds"]["fast"].loss == pytest.approx(fast(200))
    assert by["seconds"]["slow"].loss == pytest.approx(slow(100))
    assert by["seconds"]["fast"].rank == 1 and by["seconds"]["slow"].rank == 2
    assert by["seconds"]["slow"].loss - by["seconds"]["fast"].loss == pytest.approx(-0.1 + 0.5 * math.log(2))
    # equal compute: 2e11 FLOPs, the same answer as time here (FLOPs/step and s/step both doubled)
    assert views["flops"].budgets == {"nano": pytest.approx(200 * 1e9)}
    assert by["flops"]["slow"].loss == pytest.approx(slow(100)) and by["flops"]["fast"].rank == 1
    (d,) = disagreements(views)
    assert set(d.changed) == {("fast", "pre"), ("slow", "pre")}
    assert d.winners == {"steps": ("slow", "pre"), "flops": ("fast", "pre"), "seconds": ("fast", "pre")}
    assert d.tau[("steps", "seconds")] == pytest.approx(-1.0) and d.tau[("flops", "seconds")] == pytest.approx(1.0)


def test_explicit_budget_and_nothing_extrapolated(two_cells):
    recs, curves = two_cells
    v = view(recs, curves, "seconds", 300.0)  # beyond the fast cell's 200 s: it has no value there
    by = {g.group[0]: g for g in v.groups}
    assert by["fast"].loss is None and by["fast"].rank is None and by["fast"].n == 0
    assert by["slow"].loss == pytest.approx(slow(150)) and by["slow"].rank == 1
    v = view(recs, curves, "steps", 10)  # before the first validation (40 steps)
    assert all(g.loss is None for g in v.groups)


def test_time_stamps_made_cumulative_across_a_resume():
    assert cumulative([1.0, 2.0, 0.5, 1.5]) == [1.0, 2.0, 2.5, 3.5]
    assert cumulative([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]


def test_interpolation_is_linear_in_log_x():
    assert interpolate([10, 1000], [3.0, 1.0], 100) == pytest.approx(2.0)
    assert interpolate([10, 1000], [3.0, 1.0], 10) == 3.0 and interpolate([10, 1000], [3.0, 1.0], 1000) == 1.0
    assert interpolate([10, 1000], [3.0, 1.0], 9) is None and interpolate([10, 1000], [3.0, 1.0], 1001) is None


def test_seconds_are_estimated_without_a_time_column():
    r = record("a", train_seconds=100.0, steps=200)
    c = cell_curve(r, csv_curve([(100, 3.0), (200, 2.5)]))
    assert c.seconds == [50.0, 100.0] and c.seconds_estimated
    assert c.flops == [100 * 1e9, 200 * 1e9]
    r2 = record("b", accum=4)
    assert cell_curve(r2, csv_curve([(100, 3.0)])).flops == [100 * 4 * 1e9]  # FLOPs per micro-batch x accum
    assert cell_curve(record("c", status="diverged"), csv_curve([(100, 3.0)])) is None


@pytest.mark.parametrize("text,expected", [("flops=1e12", ("flops", 1e12)), ("seconds=30", ("seconds", 30.0)),
                                           ("steps=200", ("steps", 200.0)), ("steps", ("steps", None))])
def test_parse_budget(text, expected):
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["tokens=5", "flops=abc", "seconds=-1", "steps=0"])
def test_parse_budget_rejects(text):
    with pytest.raises(ValueError, match="flops|number"):
        parse_budget(text)


# ---- budget views: who reached the budget, a budget no cell reaches, no rank change for a dropout -----

def test_a_cell_that_drops_out_of_a_view_moves_no_other_cells_rank():
    from bench.results.tables.comparisons import rank_table

    recs, curves = three_cells()
    views = three_views(recs, curves, {"seconds": 150.0})
    (d,) = disagreements(views)
    assert d.ranks[("c", "pre")] == {"steps": 1, "flops": 1, "seconds": None}
    assert d.ranks[("a", "pre")] == {"steps": 2, "flops": 2, "seconds": 1}  # c is gone at 150 s
    assert d.changed == [] and d.dropped == {("c", "pre"): ["seconds"]}
    t = rank_table(views)
    changes = {row["activation"]: row["changes"] for row in t.values()}
    assert changes == {"a": "", "b": "", "c": "not reached at seconds"}
    assert "no group changes rank" in t.notes[0]
