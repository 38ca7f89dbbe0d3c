"""`bench overhead`'s verdict: a ratio measured on a noisy machine says, from its pairs' interval,
whether it can carry the target, and how far apart its runs landed."""

import math

import pytest

from bench.commands.overhead import verdict_line
from bench.run.tools.overhead import T975, TARGET, pair_interval, spread, verdict


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
         "verdict": verdict(pairs), "added_ms_per_step": 1.6543, "threads": 2}
    line = verdict_line(r)
    g, lo, hi = r["pair_interval"]
    assert "1.047" in line and f"geometric mean {g:.3f}, 95% CI {lo:.3f}-{hi:.3f}" in line
    assert "bare runs spread 28%" in line and "inconclusive" in line and "--repeats 32 --steps 50" in line
    assert "the harness adds 1.65 ms a step" in line and "2 CPU threads" in line and "--threads" in line
    pairs = [0.97, 0.99, 1.0, 0.98]
    r.update(pair_ratios=pairs, pair_interval=pair_interval(pairs), verdict=verdict(pairs))
    assert "met[/] (the interval lies under it)" in verdict_line(r)
    r.update(pair_ratios=[1.0], pair_interval=None, verdict="inconclusive")
    assert "one pair: no interval" in verdict_line(r)


def test_measure_runs_its_pairs_in_abba_order_at_the_threads_asked(monkeypatch):
    from types import SimpleNamespace

    import torch

    import bench.run.tools.overhead as overhead

    calls = []
    monkeypatch.setattr(overhead, "DataCache", lambda: SimpleNamespace(get=lambda cfg: SimpleNamespace(
        train_dataloader=lambda: None)))
    cfg = SimpleNamespace(train=SimpleNamespace(val_every=10, max_steps=20, throughput_warmup=2, batch_size=4,
                                                grad_accum=1),
                          model=SimpleNamespace(block_size=8))
    threads = torch.get_num_threads()
    monkeypatch.setattr(overhead, "harness", lambda *a: calls.append(("harness", torch.get_num_threads())) or 80.0)
    monkeypatch.setattr(overhead, "bare_loop", lambda *a: calls.append(("bare", torch.get_num_threads())) or 100.0)
    r = overhead.measure(SimpleNamespace(config=cfg), repeats=3, threads=1)
    assert calls == [(name, 1) for name in ("bare", "harness", "harness", "bare", "bare", "harness")]
    assert r["threads"] == 1 and torch.get_num_threads() == threads  # both loops at 1, restored after
    assert r["pair_ratios"] == [1.25, 1.25, 1.25] and r["verdict"] == "missed" and cfg.train.val_every == 10**9
    assert r["added_ms_per_step"] == pytest.approx(1e3 * (32 / 80 - 32 / 100))  # 4 x 8 tokens a step


@pytest.mark.slow  # compiles eager/compiled pairs
@pytest.mark.parametrize("how", ["regional", "whole"])
def test_the_pairs_compile_once_and_every_later_run_reuses_the_graphs(monkeypatch, tiny_dm, how):
    """One clean start for all the runs of a measurement (each one recompiling would set the two
    loops of a pair seconds apart on a CPU, tens of seconds on a GPU), and no run past the first
    compiles anew or falls back to eager at dynamo's recompile limit."""
    from types import SimpleNamespace

    import torch

    import bench.run.tools.overhead as overhead
    from bench.run.engine import compiling
    from bench.run.config.presets import resolve
    from bench.run.config.matrix import Cell, cell_id

    monkeypatch.setattr(compiling, "BACKEND", "eager")  # dynamo's real tracing and caches, no codegen
    resets, frames, real_reset = [], [], torch._dynamo.reset
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1) or real_reset())
    monkeypatch.setattr(overhead, "DataCache", lambda: SimpleNamespace(get=lambda cfg: tiny_dm))
    for name in ("bare_loop", "harness"):  # dynamo's frame count after each run
        run = getattr(overhead, name)
        monkeypatch.setattr(overhead, name, lambda *a, run=run: (run(*a), frames.append(
            compiling.graph_counts()["frames_ok"]))[0])
    cfg = resolve({"scale": "nano", "recipe": "cpu", "train.batch_size": 2, "model.block_size": 16,
                   "train.max_steps": 3, "train.throughput_warmup": 1, "train.compile": how})
    try:
        with torch._dynamo.config.patch(recompile_limit=8):  # dynamo's default, however the process set it
            r = overhead.measure(Cell(cell_id(cfg, {}), cfg, ()), repeats=5)  # 10 runs: past the limit
    finally:
        real_reset()
    assert len(resets) == 1
    assert frames[0] >= 1 and len(set(frames[1:])) == 1, frames  # all compiled by each loop's first run
    assert r["compiled"]["recompile_limit_hits"] == 0 and r["compiled"]["graphs"] >= 1
    assert not compiling._ONE_CACHE  # later cells compile fresh again
