"""The harness's own cost: the same model, data, batch and steps through `bench run`'s training path
and through a bare PyTorch loop, alternated in one process; reports the step-time ratio. Also the
probes' cost on one run (`python -m bench.run.tools.overhead --steps 150 --every 50`)."""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import lightning as L
import torch

from ..config.device import root_device
from ..engine import compiling
from .bare import loader_batches, timed_loop
from ..engine.callbacks import CellMetrics
from ..config.data_checks import check
from ..config.presets import resolve
from ..config.matrix import Cell
from ..engine.module import LMModule, split_batch
from ..engine.probes.training import Probes
from ..engine.environment import DataCache, check_vocab
from ..config.options import RunOptions
from ..engine.runner import train_cell


def bare_loop(cfg, loader, steps: int, warmup: int) -> float:
    """Steady-state tokens/s of the bare loop (bench/run/tools/bare.py: the harness's loss path, optimizer,
    schedule, clip, precision and compilation) over the same data loader; ``steps`` counts the
    ``warmup`` untimed ones too, as train.max_steps does for the harness."""
    device = root_device(cfg)
    batches = loader_batches(loader, device, split_batch)
    return timed_loop(cfg, batches, steps - warmup, warmup, device)["tokens_per_sec"]


def harness(cell: Cell, dm) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        rec = train_cell(cell, "overhead", dm, RunOptions(out=Path(tmp), loggers=("csv",), quiet=True))
    if rec.status != "ok":
        raise RuntimeError(f"harness run failed: {rec.error}")
    return rec.metrics.tokens_per_sec


TARGET = 1.05  # harness step time / bare step time


def measure(cell: Cell, repeats: int = 3, threads: int | None = None) -> dict:
    """``repeats`` pairs of a bare and a harness run, in ABBA order (bare first in even pairs, the
    harness first in odd ones) so a drift of the machine's speed does not favour either loop. The
    ratio of the medians, each pair's own ratio, their interval and the verdict it can carry, and
    the milliseconds the harness adds to a step (the pairs' median difference of step times).
    Pairs of short runs carry more than a few long ones: a shared machine's speed shifts by 20% for
    tens of seconds, which both loops of a short pair see alike. Every run after the first reuses
    its compiled graphs (compiling.one_cache), and the harness validates one batch, once, at its
    end (no init pass): none of that is in either timed window, and all of it would lengthen the
    gap between the two runs of a pair. ``threads``: torch's CPU threads for both loops (default: as
    set); the number used is reported."""
    cfg = cell.config
    t = cfg.train
    t.val_every = 10**9  # no validation inside the timed window, in either loop
    t.init_val, t.val_tokens = False, t.batch_size * cfg.model.block_size
    dm = DataCache().get(cfg)
    bare, ours = [], []
    runs = [(bare, lambda: bare_loop(cfg, dm.train_dataloader(), t.max_steps, t.throughput_warmup)),
            (ours, lambda: harness(cell, dm))]
    graphs, used = run_pairs(runs, repeats, threads)
    b, h = statistics.median(bare), statistics.median(ours)
    pairs = [x / y for x, y in zip(bare, ours)]  # each pair's harness / bare step time
    tokens = t.grad_accum * t.batch_size * cfg.model.block_size  # a step's, as both loops count them
    added = statistics.median(tokens / y - tokens / x for x, y in zip(bare, ours))
    return {"bare_tokens_per_sec": bare, "harness_tokens_per_sec": ours, "bare_median": b, "harness_median": h,
            "step_time_ratio": b / h, "pair_ratios": pairs, "pair_interval": pair_interval(pairs),
            "added_ms_per_step": added * 1e3, "bare_spread": spread(bare), "verdict": verdict(pairs, TARGET),
            "compiled": graphs, "threads": used}


def run_pairs(runs, repeats: int, threads: int | None) -> tuple[dict, int]:
    """The pairs in ABBA order, under one compile cache and ``threads`` (restored after); returns
    dynamo's counts over every run (the later runs compiled nothing new) and the threads used."""
    before = torch.get_num_threads()
    try:
        if threads:
            torch.set_num_threads(threads)
        used = torch.get_num_threads()
        with compiling.one_cache():
            for i in range(repeats):
                for results, run in (runs if i % 2 == 0 else runs[::-1]):
                    results.append(run())
            return compiling.graph_counts(), used
    finally:
        torch.set_num_threads(before)


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart runs of the same loop landed."""
    return (max(values) - min(values)) / statistics.median(values) if len(values) > 1 else 0.0


# Student t's 97.5% quantile by degrees of freedom (scipy.stats.t.ppf(0.975, df), checked in the
# tests); the GPU image has no scipy. Above 30 dof, 30's value: a little wide, never narrow.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def pair_interval(pairs: list[float]) -> tuple[float, float, float] | None:
    """(geometric mean, low, high) of the pairs' ratios: a 95% Student t interval on their logs;
    None for fewer than 2 pairs."""
    if len(pairs) < 2:
        return None
    logs = [math.log(p) for p in pairs]
    mean, half = statistics.fmean(logs), T975[min(len(logs) - 1, len(T975)) - 1] * statistics.stdev(logs)
    half /= math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def verdict(pairs: list[float], target: float = TARGET) -> str:
    """'met' when the pairs' 95% interval lies at or under ``target``, 'missed' when it lies above it,
    else 'inconclusive' (the runs' noise is wider than the margin; one pair carries no verdict)."""
    ci = pair_interval(pairs)
    if ci is None:
        return "inconclusive"
    if ci[2] <= target:
        return "met"
    return "missed" if ci[1] > target else "inconclusive"


def probe_overhead(scale: str = "micro", steps: int = 150, every: int = 50, **settings) -> dict:
    """Train one cell of ``scale`` on its real data with Probes(every) and report the probes' time
    against the train time (CellMetrics' clock, validation excluded; no validation is run)."""
    cfg = check(resolve({"scale": scale, "train.max_steps": steps, "train.probe_every": every, **settings}))
    dm = DataCache().get(cfg)
    check_vocab(f"probe overhead at {scale}", cfg, dm)
    t = cfg.train
    L.seed_everything(cfg.seed, verbose=False)
    metrics = CellMetrics(t.batch_size * cfg.model.block_size, t.batch_size, t.throughput_warmup, t.nan_check_every)
    probes = Probes.from_config(cfg, dm)
    trainer = L.Trainer(accelerator=t.accelerator, devices=1, precision=t.precision, max_steps=steps,
                        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        callbacks=[metrics] + ([probes] if probes else []))
    trainer.fit(LMModule(cfg), datamodule=dm)
    res = probes.result() if probes else {"overhead_train_seconds": 0.0, "overhead_end_seconds": 0.0, "steps": []}
    train = metrics.result["train_seconds"]
    without = train - res["overhead_train_seconds"]  # the probes ran inside the train clock
    return {"scale": scale, "steps": steps, "every": every, "samples": len(res["steps"]),
            "train_seconds": train, "seconds_per_step": without / steps,
            "probe_train_seconds": res["overhead_train_seconds"],
            "probe_fraction_of_train": res["overhead_train_seconds"] / without,
            "end_analyses_seconds": res["overhead_end_seconds"]}


if __name__ == "__main__":
    import argparse
    import json
    import os
    import warnings

    os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
    warnings.filterwarnings("ignore")
    parser = argparse.ArgumentParser(
        description="Measure the probes' overhead on one training run (python -m bench.run.tools.overhead).")
    parser.add_argument("--scale", default="micro")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(probe_overhead(args.scale, args.steps, args.every), indent=2))
