"""The bare timed training loop: what the harness does per optimizer step (its loss path, optimizer
groups and fused-ness, cosine schedule, global grad clip, precision and compilation) as a plain
PyTorch loop. `bench cost` times it on random tokens, `bench overhead` on the harness's own data
loader, against a `bench run` of the same cell."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import torch

from ..engine import compiling
from ..engine.builders import build_optimizer, build_schedule
from ..config.device import root_device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(cfg, device: torch.device):
    """(module, loss function, optimizer, schedule), seeded; the module's loss() is the one the
    harness trains (the model and the fused or reference loss), compiled as train.compile says."""
    from ..engine.module import LMModule

    torch.manual_seed(cfg.seed)
    module = LMModule(cfg).to(device)
    if cfg.train.precision == "bf16-true":
        module = module.to(torch.bfloat16)
    loss_fn = compiling.loss_fn(module, cfg)
    opt = build_optimizer(module.model, cfg.train, device)
    return module, loss_fn, opt, build_schedule(opt, cfg.train)


def timed_loop(cfg, batches: Iterator, steps: int, warmup: int, device: torch.device | None = None) -> dict:
    """``warmup`` untimed optimizer steps, then ``steps`` timed ones over micro-batches (x, y) from
    ``batches`` (train.grad_accum per step). The device is synchronized only at the timed window's
    two ends. Returns seconds per step, tokens/s, the last loss and the module."""
    t = cfg.train
    device = device or root_device(cfg)
    module, loss_fn, opt, sched = build(cfg, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=t.precision == "bf16-mixed")
    start = loss = None
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            start = time.perf_counter()
        for _ in range(t.grad_accum):
            x, y = next(batches)
            with autocast:
                loss = loss_fn(x, y)
            (loss / t.grad_accum).backward()
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.model.parameters(), t.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    tokens = t.grad_accum * t.batch_size * cfg.model.block_size
    return {"step_seconds": seconds, "tokens_per_sec": tokens / seconds, "final_loss": float(loss.detach()),
            "module": module}


def random_batches(cfg, device: torch.device) -> Iterator:
    """The same random (x, y) micro-batch forever: no data preparation, no loader cost."""
    m, t = cfg.model, cfg.train
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    tokens = torch.randint(0, m.vocab_size, (t.batch_size, m.block_size + 1), device=device, generator=gen)
    while True:
        yield tokens[:, :-1], tokens[:, 1:]


def loader_batches(loader, device: torch.device, split: Callable) -> Iterator:
    """Micro-batches from a data loader (epoch after epoch), moved to the device as the harness moves them."""
    while True:
        for batch in loader:
            x, y = split(batch)
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
