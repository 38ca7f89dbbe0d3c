"""Tokens/s of the harness's training path with the non-finite check read back every step (what the
old metrics callback did: float(loss) per step) and every 50 steps (the default). On CPU a read-back
costs nothing, so the two must agree within noise; on a GPU the per-step read is a host sync.

Reported, never asserted: ``pytest benchmarks/test_step_sync_speed.py --benchmark-enable``
(BENCH_SYNC_STEPS sets the steps per run, default 60; 8 when benchmarks are disabled).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_data import TinyDataModule  # noqa: E402

RESULTS: dict[int, list[float]] = {}


@pytest.mark.parametrize("every", [1, 50])
def test_harness_tokens_per_sec_by_check_interval(benchmark, timed, report_table, request, every):
    from bench.run.config.presets import resolve
    from bench.run.config.matrix import Cell, cell_id
    from bench.run.config.options import RunOptions
    from bench.run.engine.runner import train_cell

    enabled = request.config.getoption("benchmark_enable", False)
    steps = int(os.environ.get("BENCH_SYNC_STEPS", "60")) if enabled else 8
    cfg = resolve({"scale": "micro", "train.max_steps": steps, "train.val_every": 10**6, "train.throughput_warmup": 2,
                   "train.nan_check_every": every, "train.probe_every": 0, "data.ood_corpus": None})
    cell = Cell(cell_id(cfg, {}), cfg, ())
    dm = TinyDataModule(seq_len=cfg.model.block_size, batch_size=cfg.train.batch_size)
    benchmark.group = "harness training, micro swiglu, CPU: non-finite check every step vs every 50"

    def run():
        with tempfile.TemporaryDirectory() as tmp:
            rec = train_cell(cell, "bench", dm, RunOptions(out=Path(tmp), quiet=True, ckpt_every=0, force=True))
        assert rec.status == "ok", rec.error
        RESULTS.setdefault(every, []).append(rec.metrics.tokens_per_sec)

    timed(run)
    benchmark.extra_info.update(nan_check_every=every, steps=steps, tokens_per_sec=RESULTS[every])
    if len(RESULTS) == 2:
        med = {k: sorted(v)[len(v) // 2] for k, v in RESULTS.items()}
        report_table("sync-free metrics: steady-state tokens/s (median over rounds)",
                     ["nan_check_every", "tokens/s"], [[k, f"{v:,.0f}"] for k, v in sorted(med.items())],
                     notes=[f"ratio every-50 / every-1: {med[50] / med[1]:.3f} (1.0 = no difference; CPU noise ~5%)"])
