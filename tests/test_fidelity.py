"""Fidelity of what the tables rest on: the loss at init is measured (not assumed to be ln V) and is
the l_0 of the LR sensitivity; a sweep grid point whose seeds all failed is listed as failed; the
share of a cell's fit time spent validating is recorded, shown and warned about."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from bench.results.compare_tables import grid_table, lr_table, markdown_sections
from bench.results.leaderboard import long_rows, render_rich, to_markdown
from bench.results.lr import MEASURED, UNIFORM, lr_curves, lr_notes, lr_rows
from bench.results.records import Record
from bench.results.validation_cost import WARN_SHARE, eval_share_warning

ROOT = Path(__file__).resolve().parent.parent
LN_V = math.log(256)


def rec(act, lr, seed=0, loss=3.0, status="ok", init=None, error=None, share=None, train_seconds=10.0):
    metrics = {"val_loss": loss, "val_ppl": math.exp(loss), "train_seconds": train_seconds} if status == "ok" else {}
    if init is not None:
        metrics["init_val_loss"] = init
    if share is not None:
        metrics["eval_share"] = share
    return Record.from_dict({
        "id": f"nano-{act}-pre-lr{lr}-s{seed}", "scale": "nano", "activation": act, "norm": "pre", "seed": seed,
        "status": status, "metrics": metrics, "error": error, "data": {"vocab_size": 256, "unigram_ppl": 30.0},
        "params": {"total": 1100, "non_embedding": 1000}, "started": f"2026-01-01T00:00:{seed:02d}",
        "config": {"seed": seed, "train": {"lr": lr, "max_steps": 100, "warmup_steps": 10, "val_tokens": 65536,
                                           "val_every": 100}, "data": {"tokenizer": "bytes"}},
        "axes": {"train.lr": lr}})


# ---- the loss at init: measured, and the l_0 of the sensitivity ------------------------------------

def sweep(init=None):
    """One group over 4 LRs x 2 seeds: 3.0 / 3.5 / 5.6 (between ln V = 5.545 and the measured init
    loss 5.70 or 5.72) / diverged."""
    inits = {0: init, 1: init + 0.02} if init is not None else {0: None, 1: None}
    out = []
    for lr, loss in ((1e-3, 3.0), (3e-3, 3.5), (1e-2, 5.6), (3e-2, None)):
        for s in (0, 1):
            out.append(rec("swiglu", lr, s, loss if loss is not None else 0.0,
                           "ok" if loss is not None else "diverged", init=inits[s]))
    return out


def test_l0_is_the_mean_measured_init_loss_and_enters_the_sensitivity():
    (c,) = lr_curves(sweep(init=5.70))
    l0 = 5.71  # mean of the two seeds' measured init losses (5.70, 5.72)
    assert c.l0 == pytest.approx(l0) and c.l0_basis == MEASURED
    # 5.6 is below the measured l_0: not capped, and that LR trains; the diverged LR counts at l_0
    assert [p.value for p in c.points[:3]] == pytest.approx([3.0, 3.5, 5.6])
    assert [p.trains for p in c.points] == [True, True, True, False]
    assert c.frontier == 1e-2
    assert c.sensitivity == pytest.approx(np.mean([0.0, 0.5, 5.6 - 3.0, l0 - 3.0]))
    (row,) = lr_rows([c])
    assert row["l0"] == pytest.approx(l0) and "ln V" not in row["note"]
    assert not lr_notes([c])
    (cells,), _ = lr_table(sweep(init=5.70))
    assert "5.7100" in cells and not any("ln V" in x for x in cells)


def test_without_a_measured_init_loss_l0_falls_back_to_ln_v_and_says_so():
    (c,) = lr_curves(sweep())
    assert c.l0 == pytest.approx(LN_V) and c.l0_basis == UNIFORM
    # against ln V, 5.6 counts as no better than init: capped, and that LR does not train
    assert c.points[2].value == pytest.approx(LN_V) and not c.points[2].trains and c.frontier == 3e-3
    assert c.sensitivity == pytest.approx(np.mean([0.0, 0.5, LN_V - 3.0, LN_V - 3.0]))
    (row,) = lr_rows([c])
    assert "l_0 = ln V" in row["note"]
    (note,) = lr_notes([c])
    assert note.startswith("l_0 is ln V for 1 group(s) (swiglu / pre (nano))")
    (cells,), _ = lr_table(sweep())
    assert f"{LN_V:.4f} (ln V)" in cells
    md = "\n".join(markdown_sections(sweep(), None))
    assert "l_0 is ln V" in md


# ---- a grid point whose seeds all failed ------------------------------------------------------------

def with_failed_point():
    recs = [r for r in sweep(init=5.70) if r.config["train"]["lr"] != 3e-2]
    recs += [rec("swiglu", 3e-4, s, status="oom", error="CUDA out of memory. Tried to allocate 2.0 GiB\nmore")
             for s in (0, 1)]
    return recs


def test_a_grid_point_whose_seeds_all_failed_is_listed_as_failed_and_never_best():
    recs = with_failed_point()
    (c,) = lr_curves(recs)
    assert [p.lr for p in c.points] == [3e-4, 1e-3, 3e-3, 1e-2]  # present, not vanished
    (bad,) = c.failed
    assert bad.lr == 3e-4 and bad.value is None and not bad.trains
    assert bad.status_text() == "failed (oom 2/2): CUDA out of memory. Tried to allocate 2.0 GiB"
    assert c.best.lr == 1e-3  # the failed point has no loss: it cannot be the best
    (ref,) = lr_curves([r for r in recs if r.status == "ok"])
    assert c.sensitivity == pytest.approx(ref.sensitivity)  # and is not in the sensitivity
    (row,) = lr_rows([c])
    assert row["failed_at"] == "0.0003" and row["lrs"] == 4
    grid = grid_table([c])
    assert [g[3] for g in grid] == ["0.0003", "0.001", "0.003", "0.01"]  # the LR column
    assert grid[0][-1].startswith("failed (oom 2/2)") and grid[0][5] == "-" and grid[1][-1] == "ok"
    assert any(n.startswith("Failed: 1 grid point(s)") and "lr 0.0003" in n for n in lr_notes([c]))


def test_the_sweep_tables_show_the_failed_point_as_a_row():
    recs = with_failed_point()
    md = to_markdown(recs, "default-lr")
    grid = md[md.index("### Every grid point"):]
    assert "| nano | swiglu | pre | 0.0003 | 2 | - | no | failed (oom 2/2): CUDA out of memory" in grid
    buf = io.StringIO()
    render_rich(recs, Console(file=buf, width=250, force_terminal=False), "default-lr")
    text = buf.getvalue()
    assert "learning-rate grid" in text and "failed (oom 2/2)" in text and "failed_at" in text


# ---- the validation's share of the fit time ---------------------------------------------------------

def test_eval_share_is_a_column_and_warns_above_30_percent():
    recs = [rec("swiglu", 1e-3, 0, share=0.12), rec("gelu", 1e-3, 0, share=0.45)]
    rows = {r["activation"]: r for r in long_rows(recs)}
    assert rows["gelu"]["eval_share"] == 0.45 and rows["swiglu"]["eval_share"] == 0.12
    w = eval_share_warning(recs)
    assert w.startswith("Warning: validation took more than 30% of the fit time in 1 cell(s) (up to 45%")
    assert "65536 tokens per split every 100 steps" in w and "--train.val_every" in w
    md = to_markdown(recs, "m")
    assert w in md and "| 45.00% |" in md
    assert eval_share_warning([rec("a", 1e-3, share=WARN_SHARE)]) is None  # at the threshold: no warning
    assert eval_share_warning([rec("a", 1e-3)]) is None  # records from before the measurement
    buf = io.StringIO()
    render_rich(recs, Console(file=buf, width=300, force_terminal=False), "m")
    assert "validation share of fit time (%)" in buf.getvalue() and "Warning: validation took" in buf.getvalue()


def test_module_eval_metrics_and_the_checkpoint_keep_the_init_loss():
    from bench.run.config.presets import resolve
    from bench.run.engine.module import LMModule

    cfg = resolve({"scale": "nano"})
    cfg.model.vocab_size = 256
    m = LMModule(cfg)
    m.init_val_loss, m.val_seconds = 5.61, 1.0
    assert m.eval_metrics(3.0) == {"init_val_loss": 5.61, "val_seconds": 1.0, "eval_share": 0.25}
    ckpt = {}
    m.on_save_checkpoint(ckpt)
    resumed = LMModule(cfg)
    resumed.on_load_checkpoint(ckpt)  # a resume keeps the value measured at the start
    assert resumed.init_val_loss == 5.61 and resumed.val_seconds == 1.0
    assert LMModule(cfg).eval_metrics(3.0) == {"init_val_loss": None, "val_seconds": None}


# ---- as a user runs it --------------------------------------------------------------------------------

def test_a_nano_run_records_its_init_loss_and_eval_share_and_the_table_shows_them(tmp_path):
    """One nano cell, 4 steps, in a subprocess (about 10 s: imports and a real fit)."""
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
    args = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.max_steps", "4",
            "--train.val_every", "2", "--train.warmup_steps", "1", "--train.probe_every", "0",
            "--train.val_tokens", "2048", "--train.throughput_warmup", "1", "--out", str(tmp_path), "--quiet"]
    r = subprocess.run([sys.executable, "-m", "bench.cli", "run", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, env=env)
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("default/*/record.json")
    m = json.loads(path.read_text())["metrics"]
    # at init a model scores about ln V, a little above it (small random logits): measured, not assumed
    assert LN_V - 0.05 < m["init_val_loss"] < LN_V + 0.3 and m["init_val_loss"] != pytest.approx(LN_V, abs=1e-6)
    assert m["val_loss"] < m["init_val_loss"]
    assert m["val_seconds"] > 0 and 0 < m["eval_share"] < 1
    assert m["eval_share"] == pytest.approx(m["val_seconds"] / (m["val_seconds"] + m["train_seconds"]))
    # no curve row at step 0: the init pass is not a validation point
    with open(path.parent / "metrics.csv") as f:
        assert [int(row["step"]) for row in csv.DictReader(f) if row.get("val/loss")] == [1, 3]
    t = subprocess.run([sys.executable, "-m", "bench.cli", "table", str(tmp_path / "default"), "--format", "md"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert t.returncode == 0, t.stderr
    assert "eval_share" in t.stdout and f"{100 * m['eval_share']:.2f}%" in t.stdout
    if m["eval_share"] > WARN_SHARE:
        assert "Warning: validation took more than 30% of the fit time in 1 cell(s)" in t.stdout


# ---- validation's planned share: what `bench plan` says before anything trains -------------------------

def planned(overrides: dict) -> float:
    from bench.results.validation_cost import planned_eval_share
    from bench.run.config.presets import resolve

    return planned_eval_share(resolve(overrides))


def test_planned_eval_share_by_hand():
    # micro: seq 128, batch 16; 300 steps, validations at 100, 200, 300 over val and ood, and the init
    # pass over val: 7 split-passes of 32768 tokens against 3 x 300 x 16 x 128 trained token-passes
    cfg = {"scale": "micro", "train.max_steps": 300, "train.val_tokens": 32768}
    assert planned(cfg) == pytest.approx(7 * 32768 / (7 * 32768 + 3 * 300 * 16 * 128), rel=1e-12)
    # 250 steps: 100, 200 and the end; no init pass; no ood split; 100 tokens round down to no row: one row
    cfg = {"scale": "micro", "train.max_steps": 250, "train.val_tokens": 100, "train.init_val": False,
           "data.ood_corpus": "none"}
    assert planned(cfg) == pytest.approx(3 * 128 / (3 * 128 + 3 * 250 * 16 * 128), rel=1e-12)
    cfg = {"scale": "micro", "train.max_steps": 300, "train.val_tokens": 32768, "data.eval": {"a": "kjv"}}
    assert planned(cfg) == pytest.approx(10 * 32768 / (10 * 32768 + 3 * 300 * 16 * 128), rel=1e-12)


def test_the_default_matrix_plans_validation_under_15_percent():
    from bench.results.validation_cost import TARGET_SHARE, planned_eval_share
    from bench.run.config.matrix import expand, load_matrix

    cells = expand(load_matrix("default"))
    shares = [planned_eval_share(c.config) for c in cells]
    assert len(shares) == 8 and max(shares) < TARGET_SHARE
    # the general default of val_tokens would take about a fifth: why the default matrix halves it
    assert planned({"scale": "micro", "train.max_steps": 300}) > TARGET_SHARE


def test_bench_plan_states_the_planned_share_and_warns_above_30_percent():
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "COLUMNS": "400"}

    def plan(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "bench.cli", "plan", "--activation", "swiglu", "--norm", "pre",
                            *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        return r.stdout

    quiet = plan()
    assert "validation: 11% of each cell's compute, planned" in quiet and "warning" not in quiet
    loud = plan("--train.max_steps", "60", "--train.val_every", "10")
    assert "warning: validation: 54% of each cell's compute, planned" in loud
    assert "raise --train.val_every or lower --train.val_tokens" in loud
    j = subprocess.run([sys.executable, "-m", "bench.cli", "plan", "--activation", "swiglu", "--norm", "pre", "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    (cell,) = json.loads(j.stdout)["cells"]
    assert cell["eval_share_planned"] == pytest.approx(7 * 32768 / (7 * 32768 + 3 * 300 * 16 * 128))


def test_the_default_matrix_at_the_old_val_tokens_has_the_old_ids():
    """Results of the default matrix from before it halved val_tokens stay where a run finds them:
    `bench run --train.val_tokens 65536` plans exactly their ids (recorded then), so it trains nothing
    they hold; without it, the new cells land beside them and the tables label both by val_tokens."""
    import hashlib

    from bench.run.config.matrix import expand, load_matrix

    ids = [c.id for c in expand(load_matrix("default"), overrides={"train.val_tokens": 65536})]
    assert (len(ids), hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16], ids[0]) == \
        (8, "6f67d441552094e9", "micro-swiglu-pre-s0-88b7f7")


def test_old_and_new_default_cells_are_labelled_not_pooled():
    from bench.results.grouping import row_labels

    old, new = rec("swiglu", 1e-3, loss=3.0), rec("swiglu", 1e-3, loss=3.1)
    new.config["train"]["val_tokens"] = 32768
    new.id = "nano-swiglu-pre-s0-new"
    assert row_labels([old, new]) == {old.id: "swiglu [train.val_tokens=65536]",
                                      new.id: "swiglu [train.val_tokens=32768]"}
