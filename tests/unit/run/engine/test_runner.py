"""Fidelity of what the tables rest on, where the runner measures it: the loss at init is measured (not
assumed to be ln V) and kept across a resume; the share of a cell's fit time spent validating is recorded,
shown and warned about, and planned before anything trains. The tables' use of them is tested with the
results (tests/unit/results/)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.stats.costs import WARN_SHARE

ROOT = Path(__file__).resolve().parents[4]
LN_V = math.log(256)


# ---- the loss at init, kept by the module and its checkpoint -----------------------------------------

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

@pytest.mark.slow  # trains a nano cell
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
    from bench.results.stats.costs import planned_eval_share
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
    from bench.results.stats.costs import TARGET_SHARE, planned_eval_share
    from bench.run.config.matrix import expand, load_matrix

    cells = expand(load_matrix("default"))
    shares = [planned_eval_share(c.config) for c in cells]
    assert len(shares) == 8 and max(shares) < TARGET_SHARE
    # the general default of val_tokens would take about a fifth: why the default matrix halves it
    assert planned({"scale": "micro", "train.max_steps": 300}) > TARGET_SHARE


@pytest.mark.slow  # times validation on a real cell
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


