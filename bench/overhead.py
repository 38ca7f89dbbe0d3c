"""The harness's own cost: the same model, data, batch and steps through `bench run`'s training path
and through a bare PyTorch loop, alternated in one process; reports the step-time ratio."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import torch

from models import Transformer

from .matrix import Cell
from .module import cosine_with_warmup, lm_loss, param_groups, split_batch
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
    if rec["status"] != "ok":
        raise RuntimeError(f"harness run failed: {rec.get('error')}")
    return rec["metrics"]["tokens_per_sec"]


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
