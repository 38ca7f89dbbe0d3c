"""One check cell, trained in a bare in-process loop built from the harness's own pieces
(Transformer, bench.run.engine.builders' optimizer and schedule, lm_loss), and the cells run in forked
single-threaded workers. ``untrained`` stops after the two pure-math probes (init, perturbed init)."""

from __future__ import annotations

import copy
import hashlib
import math
import multiprocessing
import os
import platform
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from models import Transformer, count_params

from ....console import err as progress_console, progress_columns
from .cells import PROBE_SEED, PROBE_STD, SEED, VAL_ROWS, cell_config, cell_name, logged_steps


@dataclass
class CheckData:
    train: torch.Tensor  # (steps * batch, block + 1) int64, batch s is rows [s*B, (s+1)*B)
    val: torch.Tensor  # (VAL_ROWS, block + 1)
    batch_size: int
    fingerprint: str


def _rows(stream: np.ndarray, n: int, width: int) -> torch.Tensor:
    """n windows of ``width`` tokens at evenly spaced offsets over the whole stream."""
    starts = (np.arange(n, dtype=np.int64) * (len(stream) - width)) // n
    return torch.from_numpy(np.stack([stream[s:s + width] for s in starts]).astype(np.int64))


@cache
def load_data(steps: int) -> CheckData:
    """Fixed real text: the bundled corpus's train and validation documents (TextDataModule's split and
    byte tokenizer), packed with EOS between documents as the harness packs them, cut into windows at
    evenly spaced offsets. No shuffling and no litdata chunks: nothing here depends on a cache or on a
    loader's shuffle algorithm, so the batches are the same on every machine and library version."""
    from datamodules.datamodule import TextDataModule

    cfg = cell_config("swiglu", "pre", steps)
    dm = TextDataModule(cfg.data, seq_len=cfg.model.block_size, batch_size=cfg.train.batch_size, seed=SEED)
    tok = dm.tokenizer

    def stream(docs) -> np.ndarray:
        eos = np.array([tok.eos_id], dtype=np.int64)
        parts = []
        for ids in tok.encode_batch([d.text for d in docs]):
            parts += [np.asarray(ids, dtype=np.int64), eos]
        return np.concatenate(parts)

    width = cfg.model.block_size + 1
    train = _rows(stream(dm.docs["train"]), steps * cfg.train.batch_size, width)
    val = _rows(stream(dm.docs["val"]), VAL_ROWS, width)
    h = hashlib.sha256()
    for t in (train, val):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return CheckData(train, val, cfg.train.batch_size, h.hexdigest()[:16])


def _value(value: torch.Tensor) -> float | None:
    v = value.item()
    return v if math.isfinite(v) else None  # JSON has no NaN; None never matches a finite baseline


def _grad_norm(model: torch.nn.Module) -> float | None:
    return _value(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))  # measured, not clipped


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the model at init with every vector and scalar parameter (norm gains, biases, polynomial
    coefficients, PReLU slopes, GPAS gates) moved by PROBE_STD * N(0, 1) from a fixed generator.

    Init values are special points of some formulas: GPAS gates start at 0, where G is the identity in
    the forward and in the backward whether or not the stop-gradient is there; gains start at 1. One
    forward and backward here is still pure math (no training, so no amplification of rounding), but
    every formula is away from its degenerate point."""
    probe = copy.deepcopy(model)
    g = torch.Generator().manual_seed(PROBE_SEED)
    with torch.no_grad():
        for p in probe.parameters():
            if p.ndim < 2:
                p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * PROBE_STD)
    return probe


def _forward_backward(model, batch, cfg) -> torch.Tensor:
    """The LM loss (recorded); the backward adds an MoE's router losses, as the harness trains."""
    from models.moe import moe_layers, weighted_router_loss

    from ...engine.module import lm_loss, split_batch

    x, y = split_batch(batch)
    loss = lm_loss(model(x), y)
    (loss + weighted_router_loss(moe_layers(model), cfg.model)[0]).backward()
    return loss


def _untrained(model, cfg, data: CheckData, losses: dict, grads: dict) -> None:
    """The two pure-math probes: the model at init and at the perturbed init, one batch, no update."""
    first = data.train[:data.batch_size]
    probe = perturbed(model)  # before any update
    losses["perturbed"] = _value(_forward_backward(probe, first, cfg))
    grads["perturbed"] = _grad_norm(probe)
    del probe
    losses["init"] = _value(_forward_backward(model, first, cfg))
    grads["init"] = _grad_norm(model)
    model.zero_grad(set_to_none=True)


def _train(model, cfg, data: CheckData, steps: int, losses: dict, grads: dict) -> None:
    from ...engine.builders import build_optimizer, build_schedule
    from ...engine.module import lm_loss, split_batch

    t, B, wanted = cfg.train, data.batch_size, set(logged_steps(steps))
    opt = build_optimizer(model, t)
    sched = build_schedule(opt, t)
    for step in range(steps):
        loss = _forward_backward(model, data.train[step * B:(step + 1) * B], cfg)
        key = "init" if step == 0 else f"step{step}" if step in wanted else "final" if step == steps - 1 else None
        if key:  # step 0's forward and backward are the model at init: pure math, no update yet
            losses[key], grads[key] = _value(loss), _grad_norm(model)
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        x, y = split_batch(data.val)
        losses["val"] = _value(lm_loss(model(x), y))


def run_cell(activation: str, norm: str, steps: int, data: CheckData, ffn: str = "dense",
             untrained: bool = False) -> dict:
    """One cell's record: parameter counts, then the losses and gradient norms (never raises for a
    model error: the error is the record). Single-threaded, as the caller sets."""
    cfg = cell_config(activation, norm, steps, ffn)
    counts = count_params(cfg.model)
    rec: dict = {"params": {"total": counts.total, "non_embedding": counts.non_embedding,
                            "intermediate_size": counts.intermediate_size},
                 "config_hash": cfg.config_hash()}
    try:
        torch.manual_seed(cfg.seed)
        model = Transformer(cfg.model)
        rec["params"]["built"] = sum(p.numel() for p in model.parameters())
        losses: dict = {"init": None, "perturbed": None}
        grads: dict = {"init": None, "perturbed": None}
        if untrained:
            _untrained(model, cfg, data, losses, grads)
        else:  # the perturbed probe first: the loop's step 0 is the init probe
            probe = perturbed(model)
            losses["perturbed"] = _value(_forward_backward(probe, data.train[:data.batch_size], cfg))
            grads["perturbed"] = _grad_norm(probe)
            del probe
            _train(model, cfg, data, steps, losses, grads)
        rec.update(loss=losses, grad_norm=grads)
    except Exception as e:  # a broken model is a failed cell, reported with the others
        rec["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
    return rec


# ---- running the cells -------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(steps: int, data: CheckData, untrained: bool, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(steps=steps, data=data, untrained=untrained)


def _work(cell: tuple[str, ...]) -> tuple[tuple[str, ...], dict]:
    return cell, run_cell(cell[0], cell[1], _WORKER["steps"], _WORKER["data"], *cell[2:],
                          untrained=_WORKER["untrained"])


def default_jobs() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


def _progress(show: bool):
    from rich.progress import Progress

    return Progress(*progress_columns(), console=progress_console, transient=True, disable=not show)


def run_cells(cells: list[tuple[str, ...]], steps: int, data: CheckData, jobs: int, show_progress: bool = True,
              untrained: bool = False, threads: int = 1) -> dict[str, dict]:
    """Every cell's record, keyed by cell name, in the order given. Each cell runs on ``threads``
    threads (one: the numbers do not depend on the machine's core count); ``jobs`` > 1 runs cells in
    forked worker processes, which inherit this process's modules as they are (monkeypatches included)."""
    results: dict[tuple[str, ...], dict] = {}
    jobs = max(1, min(jobs, len(cells)))
    if jobs > 1 and "fork" not in multiprocessing.get_all_start_methods():
        jobs = 1
    progress = _progress(show_progress)
    if jobs == 1:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            with progress:
                task = progress.add_task("checking", total=len(cells))
                for cell in cells:
                    results[cell] = run_cell(cell[0], cell[1], steps, data, *cell[2:], untrained=untrained)
                    progress.update(task, advance=1, description=f"checking {cell_name(*cell)}")
        finally:
            torch.set_num_threads(before)
    else:
        # the pool forks before the progress bar starts its refresh thread
        ctx = multiprocessing.get_context("fork")
        # slowest first (polynorm, powlu, sandwich), so no worker is left with a long tail
        order = sorted(cells, key=lambda c: (c[0] not in ("polynorm", "powlu"), c[1].split("+")[0] != "sandwich"))
        with ctx.Pool(jobs, initializer=_init_worker, initargs=(steps, data, untrained, threads)) as pool, progress:
            task = progress.add_task("checking", total=len(cells))
            for cell, rec in pool.imap_unordered(_work, order, chunksize=1):
                results[cell] = rec
                progress.update(task, advance=1, description=f"checking {cell_name(*cell)}")
    return {cell_name(*cell): results[cell] for cell in cells}


def environment() -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "system": platform.system()}
