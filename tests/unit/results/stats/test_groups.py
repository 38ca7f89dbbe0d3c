"""Groups of seed repeats (bench/results/stats/groups.py): the Student-t interval against scipy and a hand
computation, which records pool, the order the matrix gives, the baseline, and the "not learned" rule;
and scipy imported only inside the functions that need it, throughout bench/."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
from scipy import stats as sps

from bench.results.records import Record
from bench.results.stats.groups import (MARGIN, baseline_groups, cell_order, learned, parse_baseline, row_labels,
                                        summarize)

ROOT = Path(__file__).resolve().parents[4]


def rec(act="swiglu", norm="pre", seed=0, loss=3.0, scale="micro", unigram=None):
    return Record.from_dict({"id": f"{scale}-{act}-{norm}-s{seed}", "scale": scale, "activation": act, "norm": norm,
                             "seed": seed, "status": "ok", "metrics": {"val_loss": loss, "val_ppl": math.exp(loss)},
                             "data": {"unigram_ppl": unigram} if unigram else {},
                             "config": {"seed": seed, "data": {"tokenizer": "bytes"}}})


def test_ci_is_student_t_with_n_minus_1_dof():
    vals = [3.1, 2.9, 3.4, 3.0]
    s = summarize(vals)
    mean = sum(vals) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / 3)
    assert s.mean == pytest.approx(mean) and s.std == pytest.approx(sd) and s.n == 4
    assert s.half_width == pytest.approx(sps.t.ppf(0.975, 3) * sd / 2)
    lo, hi = sps.t.interval(0.95, 3, loc=mean, scale=sps.sem(vals))
    assert (s.low, s.high) == (pytest.approx(lo), pytest.approx(hi))
    assert summarize([1.0, 3.0]).half_width == pytest.approx(12.7062047 * math.sqrt(2) / math.sqrt(2))


def test_ci_needs_two_values():
    s = summarize([2.5])
    assert (s.mean, s.n, s.std, s.half_width, s.low) == (2.5, 1, None, None, None)
    with pytest.raises(ValueError):
        summarize([])


def test_baseline_parsing_and_groups():
    assert parse_baseline("swiglu:pre+gpas") == ("swiglu", "pre+gpas") and parse_baseline(None) is None
    for bad in ("swiglu", ":pre", "swiglu:"):
        with pytest.raises(ValueError, match="ACTIVATION:NORM"):
            parse_baseline(bad)
    recs = [rec("gelu", seed=s, scale="nano") for s in range(2)] + [rec("swiglu", seed=s) for s in range(2)]
    assert baseline_groups(recs, ("swiglu", "pre")) == {"nano": None, "micro": ("swiglu", "pre")}
    with pytest.raises(ValueError, match="valid: gelu:pre, swiglu:pre"):
        baseline_groups(recs, ("relu", "pre"))


def test_order_follows_the_run_then_the_recorded_matrix_order():
    """load_records sorts by folder name (gelu before swiglu); rows follow the order the cells were run
    in, and the matrix order the runner recorded first; the command line is never read."""
    recs = [rec("gelu", seed=s) for s in range(2)] + [rec("swiglu", seed=s) for s in range(2)]
    for i, r in enumerate(recs):
        r.started = f"2026-01-01T00:00:0{(i + 2) % 4}"  # swiglu cells started first
    assert cell_order(recs)["micro"][0] == ["swiglu", "gelu"]
    for r in recs:
        r.command = ["bench", "run", "--activation", "gelu,swiglu", "--norm", "pre"]
    assert cell_order(recs)["micro"][0] == ["swiglu", "gelu"]
    for r in recs:
        r.extra["axis_order"] = {"scale": ["micro"], "activation": ["gelu", "swiglu"], "norm": ["pre"]}
    assert cell_order(recs)["micro"][0] == ["gelu", "swiglu"]


def test_only_seed_repeats_pool():
    old, new = rec("swiglu"), rec("swiglu", loss=3.1)
    old.config["train"], new.config["train"] = {"val_tokens": 65536}, {"val_tokens": 32768}
    new.id = "micro-swiglu-pre-s0-new"
    assert row_labels([old, new]) == {old.id: "swiglu [train.val_tokens=65536]",
                                      new.id: "swiglu [train.val_tokens=32768]"}
    again = rec("swiglu", seed=1)
    again.config["train"] = {"val_tokens": 65536}
    assert row_labels([old, again]) == {old.id: "swiglu", again.id: "swiglu"}  # the seed alone: one group


def test_the_not_learned_rule_uses_the_margin_and_the_loss_at_init():
    ref = math.log(26.73)
    assert learned([rec("a", loss=ref - MARGIN - 1e-6, unigram=26.73)]) is True
    assert learned([rec("a", loss=ref - MARGIN + 1e-6, unigram=26.73)]) is False
    assert learned([rec("a", loss=2.0)]) is None  # no reference: no verdict
    init = rec("a", loss=2.0)
    init.metrics.extra["init_val_loss"] = 2.05
    assert learned([init]) is False  # not clearly below the measured loss at init


def test_scipy_is_imported_only_inside_the_functions_that_need_it():
    """Importing bench's modules (training a cell among them) never imports scipy through bench's own code:
    every scipy import in bench/ sits inside a function."""
    top_level = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        tree = ast.parse(path.read_text())
        inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f)}
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "scipy" or n.startswith("scipy.") for n in names) and id(node) not in inside:
                top_level.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not top_level, f"scipy imported at module level: {top_level}"
    assert any("scipy" in p.read_text() for p in (ROOT / "bench" / "results" / "stats").glob("*.py"))  # it is used
