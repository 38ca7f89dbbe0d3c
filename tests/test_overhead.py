"""`bench overhead`'s verdict: a ratio measured on a noisy machine says, from its pairs' interval,
whether it can carry the target, and how far apart its runs landed."""

import math

import pytest

from bench.commands.overhead import verdict_line
from bench.run.overhead import T975, TARGET, pair_interval, spread, verdict


@pytest.mark.parametrize("pairs,expected", [
    ([0.99, 1.0, 1.01], "met"), ([1.04, 1.04, 1.04], "met"),
    ([1.10, 1.12, 1.11], "missed"),
    ([0.95, 1.12], "inconclusive"), ([0.82, 1.0, 1.09, 1.19, 1.01], "inconclusive"),
    ([1.0], "inconclusive"), ([1.3], "inconclusive"),              # one pair carries no verdict
])
def test_verdict_over_the_pairs(pairs, expected):
    assert verdict(pairs, TARGET) == expected


def test_the_interval_by_hand():
    pairs = [0.9, 1.0, 1.1, 1.05]
    logs = [math.log(p) for p in pairs]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / 3)
    g, lo, hi = pair_interval(pairs)
    assert g == pytest.approx(math.exp(mean))
    assert (lo, hi) == pytest.approx((math.exp(mean - 3.182 * sd / 2), math.exp(mean + 3.182 * sd / 2)))
    assert pair_interval([1.0]) is None


def test_the_t_table_is_scipy_s():
    stats = pytest.importorskip("scipy.stats")
    for df, value in enumerate(T975, start=1):
        assert value == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4), df


def test_spread_is_range_over_median():
    assert spread([18000.0, 20000.0, 22000.0]) == pytest.approx(0.2)
    assert spread([5.0]) == 0.0


def test_the_line_names_the_ratio_the_interval_and_the_noise():
    pairs = [0.819, 0.998, 1.091, 1.194, 1.013]
    r = {"step_time_ratio": 1.047, "pair_ratios": pairs, "pair_interval": pair_interval(pairs), "bare_spread": 0.28,
         "verdict": verdict(pairs)}
    line = verdict_line(r)
    g, lo, hi = r["pair_interval"]
    assert "1.047" in line and f"geometric mean {g:.3f}, 95% CI {lo:.3f}-{hi:.3f}" in line
    assert "bare runs spread 28%" in line and "inconclusive" in line and "--repeats 8 --steps 60" in line
    pairs = [0.97, 0.99, 1.0, 0.98]
    r.update(pair_ratios=pairs, pair_interval=pair_interval(pairs), verdict=verdict(pairs))
    assert "met[/] (the interval lies under it)" in verdict_line(r)
    r.update(pair_ratios=[1.0], pair_interval=None, verdict="inconclusive")
    assert "one pair: no interval" in verdict_line(r)


def test_measure_runs_its_pairs_in_abba_order(monkeypatch):
    from types import SimpleNamespace

    import bench.run.overhead as overhead

    calls = []
    monkeypatch.setattr(overhead, "DataCache", lambda: SimpleNamespace(get=lambda cfg: SimpleNamespace(
        train_dataloader=lambda: None)))
    monkeypatch.setattr(overhead, "bare_loop", lambda *a: calls.append("bare") or 100.0)
    monkeypatch.setattr(overhead, "harness", lambda *a: calls.append("harness") or 80.0)
    cfg = SimpleNamespace(train=SimpleNamespace(val_every=10, max_steps=20, throughput_warmup=2))
    r = overhead.measure(SimpleNamespace(config=cfg), repeats=3)
    assert calls == ["bare", "harness", "harness", "bare", "bare", "harness"]
    assert r["pair_ratios"] == [1.25, 1.25, 1.25] and r["verdict"] == "missed" and cfg.train.val_every == 10**9
