"""What cells cost and how far to trust it (bench/results/stats/costs.py): the throughput's spread over
seeds against a hand computation, the shared-machine flag, the validation's share of the fit time and its
warning, the planned share before anything trains, and the cost / quality Pareto front."""

from __future__ import annotations

import math

import pytest

from bench.results.records import Record
from bench.results.stats.costs import (WARN_SHARE, cost_noise, cost_note, eval_share_warning, pareto_front,
                                       shared_machine)


def rec(act, seed, tps=1000.0, shared=None, share=None, loss=2.0):
    d = {"id": f"nano-{act}-pre-s{seed}", "scale": "nano", "activation": act, "norm": "pre", "seed": seed,
         "status": "ok",
         "metrics": {"val_loss": loss, "tokens_per_sec": tps, **({"eval_share": share} if share else {})},
         "config": {"seed": seed, "train": {"val_tokens": 65536, "val_every": 100}}}
    if shared is not None:
        d["sharing"] = {"load_avg_1m": 3.0, "cpu_count": 2, "threads": 1, "workers": 2, "shared": shared}
    return Record.from_dict(d)


def test_the_spread_over_seeds_and_the_shared_machine_flag():
    recs = [rec("swiglu", 0, 4989.0, shared=True), rec("swiglu", 1, 8179.0, shared=False), rec("gelu", 0)]
    sd = math.sqrt(((4989 - 6584) ** 2 + (8179 - 6584) ** 2) / 1) / 6584
    noise = cost_noise(recs)
    assert noise[recs[0].id] == noise[recs[1].id] == pytest.approx(sd) and noise[recs[2].id] is None  # 1 seed
    assert [shared_machine(r) for r in recs] == [True, False, False]
    assert cost_note(recs) == (
        "Cost figures are noisy here: 1 cell(s) were measured while sharing the machine (shared machine: yes); "
        f"tokens/s varies by up to {sd:.0%} (SD over seeds, as a share of the mean); for clean cost figures run "
        "`bench cost`, one measurement at a time on an idle machine.")
    assert cost_note([rec("swiglu", s, 1000.0 + s) for s in range(2)]) is None  # old records, quiet spread


def test_validation_share_warns_above_30_percent():
    recs = [rec("swiglu", 0, share=0.12), rec("gelu", 0, share=0.45)]
    w = eval_share_warning(recs)
    assert w.startswith("Warning: validation took more than 30% of the fit time in 1 cell(s) (up to 45%")
    assert "65536 tokens per split every 100 steps" in w and "--train.val_every" in w
    assert eval_share_warning([rec("a", 0, share=WARN_SHARE)]) is None  # at the threshold: no warning
    assert eval_share_warning([rec("a", 0)]) is None  # records from before the measurement


def test_pareto_front():
    pts = [(100, 10.0), (200, 12.0), (50, 9.0), (150, 11.0), (120, 12.5), (200, 13.0)]
    assert pareto_front(pts) == [2, 0, 3, 1]  # sorted by speed; (120, 12.5) and (200, 13) are dominated
    assert pareto_front([(1, 5)]) == [0] and pareto_front([(1, float("nan"))]) == []
