"""Training curves (bench/results/curves.py): metrics.csv parsed with its sparse rows, and the tokens and
seconds until the validation loss first reaches a target, against hand computations."""

from __future__ import annotations

import math

import pytest

from bench.results.curves import parse_curve, time_to_target
from bench.results.records import Record
from .support import CURVE


def rec(act="swiglu", norm="pre", seed=0, loss=3.0, scale="micro", status="ok", n_params=1000, tokens=10_000,
        steps=10, train_seconds=5.0):
    return Record.from_dict({"id": f"{scale}-{act}-{norm}-s{seed}", "scale": scale, "activation": act, "norm": norm,
            "seed": seed, "status": status,
            "metrics": {"val_loss": loss, "val_ppl": math.exp(loss), "tokens": tokens, "steps": steps,
                        "train_seconds": train_seconds, "tokens_per_sec": 1000.0} if status == "ok" else {},
            "params": {"total": n_params + 100, "non_embedding": n_params},
            "config": {"seed": seed, "model": {"block_size": 10}, "train": {"batch_size": 100, "grad_accum": 1},
                       "data": {"tokenizer": "bytes"}}})


def test_parse_curve_sparse_rows():
    c = parse_curve(CURVE)
    assert c["val/loss"] == [(9, 3.5), (19, 2.8), (29, 2.4)]
    assert c["train/loss"] == [(4, 4.0), (14, 3.0), (24, 2.6)] and "epoch" not in c


def test_time_to_target_from_the_curve():
    r = rec(tokens=30 * 100 * 10, steps=30, train_seconds=12.0)
    r.config["train"]["grad_accum"] = 2  # metrics.tokens / steps wins over the config when present
    c = parse_curve(CURVE)
    t = time_to_target(r, c, 3.0)  # first val <= 3.0: logged step 19 = 20 steps done
    assert t.reached and t.step == 20 and t.loss == 2.8
    assert t.tokens == 20 * 100 * 10 and t.seconds == pytest.approx(12.0 * 20 / 30) and t.seconds_estimated
    assert time_to_target(r, c, 2.4).step == 30  # exactly equal counts as reached
    assert time_to_target(r, c, 3.5).tokens == 10 * 1000
    assert not time_to_target(r, c, 2.0).reached and time_to_target(r, c, 2.0).tokens is None
    assert not time_to_target(r, None, 3.0).reached
    r.metrics.tokens = None  # from the config: batch_size * block_size * grad_accum
    assert time_to_target(r, c, 3.0).tokens == 20 * 100 * 10 * 2


def test_time_to_target_uses_a_time_column_when_there_is_one():
    text = CURVE.replace("val/ppl\n", "val/ppl,time/train_seconds\n", 1)
    lines = text.splitlines()
    lines = [lines[0]] + [ln + f",{float(i)}" for i, ln in enumerate(lines[1:], 1)]
    t = time_to_target(rec(steps=30), parse_curve("\n".join(lines)), 3.0)
    assert t.seconds == 4.0 and not t.seconds_estimated  # the row logged at step 19 is the 4th
