"""The harness's own cost: the same model, data, batch and steps through `bench run`'s training path
and through a bare PyTorch loop, alternated in one process; reports the step-time ratio. Also the
probes' cost on one run (`python -m bench.run.overhead --steps 150 --every 50`)."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from models import Transformer

from .callbacks import CellMetrics
from .config import resolve
from .matrix import Cell
from .module import LMModule, cosine_with_warmup, lm_loss, param_groups, split_batch
from .probes import Probes
from .runner import DataCache, RunOptions, train_cell


def bare_loop(cfg, loader, steps: int, warmup: int) -> float:
    """Steady-state tokens/s of a plain loop doing what the harness does per step (AdamW with the
    same groups, cosine schedule, global grad clip), on the same data loader."""
    torch.manual_seed(cfg.seed)
    t = cfg.train
    model = Transformer(cfg.model)
    if t.compile:
        model.compile()
    opt = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas), eps=t.eps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: cosine_with_warmup(s, t.warmup_steps, t.max_steps, t.min_lr_ratio))
    it, start = iter(loader), None
    for step in range(steps):
        if step == warmup:
            start = time.perf_counter()
        x, y = split_batch(next(it))
        loss = lm_loss(model(x), y)
        loss.backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    loss.item()
    return (steps - warmup) * t.batch_size * cfg.model.block_size / (time.perf_counter() - start)


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
    metrics = CellMetrics(t.batch_size * cfg.model.block_size, t.batch_size, t.throughput_warmup)
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
    parser = argparse.ArgumentParser(description="Measure the probes' overhead on one training run (python -m bench.run.overhead).")
    parser.add_argument("--scale", default="micro")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--every", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(probe_overhead(args.scale, args.steps, args.every), indent=2))
