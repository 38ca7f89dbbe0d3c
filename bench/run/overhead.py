"""The harness's own cost: the same model, data, batch and steps through `bench run`'s training path
and through a bare PyTorch loop, alternated in one process; reports the step-time ratio. Also the
probes' cost on one run (`python -m bench.run.overhead --steps 150 --every 50`)."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import lightning as L

from .bare import loader_batches, run_device, timed_loop
from .callbacks import CellMetrics
from .config import resolve
from .matrix import Cell
from .module import LMModule, split_batch
from .probes import Probes
from .environment import DataCache
from .runner import RunOptions, train_cell


def bare_loop(cfg, loader, steps: int, warmup: int) -> float:
    """Steady-state tokens/s of the bare loop (bench/run/bare.py: the harness's loss path, optimizer,
    schedule, clip, precision and compilation) over the same data loader; ``steps`` counts the
    ``warmup`` untimed ones too, as train.max_steps does for the harness."""
    device = run_device(cfg)
    batches = loader_batches(loader, device, split_batch)
    return timed_loop(cfg, batches, steps - warmup, warmup, device)["tokens_per_sec"]


def harness(cell: Cell, dm) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        rec = train_cell(cell, "overhead", dm, RunOptions(out=Path(tmp), loggers=("csv",), quiet=True))
    if rec.status != "ok":
        raise RuntimeError(f"harness run failed: {rec.error}")
    return rec.metrics.tokens_per_sec


def measure(cell: Cell, repeats: int = 3) -> dict:
    """Alternate bare and harness runs ``repeats`` times; medians and their ratio."""
    cfg = cell.config
    cfg.train.val_every = 10**9  # no validation inside the timed window, in either loop
    dm = DataCache().get(cfg)
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(bare_loop(cfg, dm.train_dataloader(), cfg.train.max_steps, cfg.train.throughput_warmup))
        ours.append(harness(cell, dm))
    b, h = statistics.median(bare), statistics.median(ours)
    return {"bare_tokens_per_sec": bare, "harness_tokens_per_sec": ours, "bare_median": b, "harness_median": h,
            "step_time_ratio": b / h}


def probe_overhead(scale: str = "micro", steps: int = 150, every: int = 50, **settings) -> dict:
    """Train one cell of ``scale`` on its real data with Probes(every) and report the probes' time
    against the train time (CellMetrics' clock, validation excluded; no validation is run)."""
    cfg = resolve({"scale": scale, "train.max_steps": steps, "train.probe_every": every, **settings})
    dm = DataCache().get(cfg)
    cfg.model.vocab_size = dm.vocab_size
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
        description="Measure the probes' overhead on one training run (python -m bench.run.overhead).")
    parser.add_argument("--scale", default="micro")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(probe_overhead(args.scale, args.steps, args.every), indent=2))
