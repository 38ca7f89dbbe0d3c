"""Learning-rate robustness (bench/results/stats/lr.py) on synthetic sweeps whose answers are known: best
LR, stability frontier and Wortsman et al.'s sensitivity under forced divergence, the loss at init as
measured (not assumed ln V), and grid points whose seeds all failed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.results.records import Record
from bench.results.stats.lr import MEASURED, UNIFORM, lr_curves

from ..support import record


# ---- learning-rate robustness ---------------------------------------------------------------------

def lr_records():
    """l_0 = ln 256 = 5.545; swiglu trains up to 1e-2 and diverges above; gelu trains only up to 1e-3
    (1e-2 ends worse than init), with a diverged seed at 3e-2."""
    l0 = math.log(256)
    out = []
    table = {"swiglu": {1e-4: 4.0, 1e-3: 3.0, 1e-2: 3.5, 3e-2: None, 1e-1: None},
             "gelu": {1e-4: 4.2, 1e-3: 3.2, 1e-2: l0 + 0.5, 3e-2: None, 1e-1: None}}
    for act, per in table.items():
        for lr, loss in per.items():
            for seed in (0, 1):
                status = "diverged" if loss is None else "ok"
                out.append(record(act, seed=seed, loss=loss if loss is not None else 0.0, status=status, lr=lr))
    return out, l0


def test_lr_frontier_best_and_sensitivity_on_forced_divergence():
    recs, l0 = lr_records()
    curves = {c.group[0]: c for c in lr_curves(recs)}
    s, g = curves["swiglu"], curves["gelu"]
    assert s.l0 == pytest.approx(l0)
    assert s.best.lr == 1e-3 and s.best.value == pytest.approx(3.0)
    assert s.frontier == 1e-2 and g.frontier == 1e-3
    assert s.diverged == [3e-2, 1e-1]
    # Wortsman et al.: mean over the grid of min(loss, l_0) - l*, diverged at l_0
    assert s.sensitivity == pytest.approx(np.mean([1.0, 0.0, 0.5, l0 - 3.0, l0 - 3.0]))
    assert g.sensitivity == pytest.approx(np.mean([1.0, 0.0, l0 - 3.2, l0 - 3.2, l0 - 3.2]))
    assert g.sensitivity > s.sensitivity and not s.non_monotone


def test_lr_non_monotone_and_single_lr_groups():
    recs = [record("a", lr=1e-3, loss=3.0), record("a", lr=1e-2, status="diverged"), record("a", lr=3e-2, loss=3.3),
            record("b", lr=1e-3, loss=3.0)]  # b has one LR: not a curve
    (c,) = lr_curves(recs)
    assert c.group == ("a", "pre") and c.frontier == 3e-2 and c.non_monotone


# ---- the loss at init: measured, and the l_0 of the sensitivity ------------------------------------

LN_V = math.log(256)


def fid(act, lr, seed=0, loss=3.0, status="ok", init=None, error=None):
    metrics = {"val_loss": loss, "val_ppl": math.exp(loss), "train_seconds": 10.0} if status == "ok" else {}
    if init is not None:
        metrics["init_val_loss"] = init
    return Record.from_dict({
        "id": f"nano-{act}-pre-lr{lr}-s{seed}", "scale": "nano", "activation": act, "norm": "pre", "seed": seed,
        "status": status, "metrics": metrics, "error": error, "data": {"vocab_size": 256, "unigram_ppl": 30.0},
        "params": {"total": 1100, "non_embedding": 1000}, "started": f"2026-01-01T00:00:{seed:02d}",
        "config": {"seed": seed, "train": {"lr": lr, "max_steps": 100, "warmup_steps": 10, "val_tokens": 65536,
                                           "val_every": 100}, "data": {"tokenizer": "bytes"}},
        "axes": {"train.lr": lr}})


def sweep(init=None):
    """One group over 4 LRs x 2 seeds: 3.0 / 3.5 / 5.6 (between ln V = 5.545 and the measured init
    loss 5.70 or 5.72) / diverged."""
    inits = {0: init, 1: init + 0.02} if init is not None else {0: None, 1: None}
    out = []
    for lr, loss in ((1e-3, 3.0), (3e-3, 3.5), (1e-2, 5.6), (3e-2, None)):
        for s in (0, 1):
            out.append(fid("swiglu", lr, s, loss if loss is not None else 0.0,
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


def test_without_a_measured_init_loss_l0_falls_back_to_ln_v():
    (c,) = lr_curves(sweep())
    assert c.l0 == pytest.approx(LN_V) and c.l0_basis == UNIFORM
    # against ln V, 5.6 counts as no better than init: capped, and that LR does not train
    assert c.points[2].value == pytest.approx(LN_V) and not c.points[2].trains and c.frontier == 3e-3
    assert c.sensitivity == pytest.approx(np.mean([0.0, 0.5, LN_V - 3.0, LN_V - 3.0]))


def with_failed_point():
    recs = [r for r in sweep(init=5.70) if r.config["train"]["lr"] != 3e-2]
    recs += [fid("swiglu", 3e-4, s, status="oom", error="CUDA out of memory. Tried to allocate 2.0 GiB\nmore")
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
