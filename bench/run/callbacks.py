"""Callbacks: measured cost of a cell (throughput, MFU, memory, time), divergence, live progress."""

from __future__ import annotations

import math
import time

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput, measure_flops

from models import Transformer

from .module import lm_loss
from .system import available_flops, peak_memory, reset_peak_memory


class Diverged(RuntimeError):
    def __init__(self, step: int, loss: float):
        super().__init__(f"non-finite train loss {loss} at step {step}")
        self.step = step


# MFU counts the FLOPs a token really uses: an MoE's meta forward runs top_k experts' worth of rows
# (models/moe.py), so its count is the active FLOPs of a balanced, dropless dispatch.
FLOPS_BASIS = {"dense": "all parameters (dense)",
               "moe": "active: router + top_k routed + shared experts per token (balanced, dropless)"}


def flops_per_batch(model_cfg, batch_size: int, seq_len: int) -> int:
    """Forward + backward FLOPs of one micro-batch, counted by PyTorch's FlopCounterMode (through
    Lightning's measure_flops) on a meta-device copy: no memory, no time."""
    with torch.device("meta"):
        model = Transformer(model_cfg)
        x = torch.zeros(batch_size, seq_len, dtype=torch.long)
    return measure_flops(model, lambda: model(x), lambda logits: lm_loss(logits, x))


class CellMetrics(L.Callback):
    """Steady-state tokens/s and MFU (Lightning's Throughput over the steps after ``warmup``; time
    spent validating excluded), peak memory, wall time; stops a cell whose loss is not finite."""

    def __init__(self, tokens_per_batch: int, samples_per_batch: int, warmup: int):
        self.tokens_per_batch, self.samples_per_batch, self.warmup = tokens_per_batch, samples_per_batch, warmup
        self.series: list[tuple[float, int]] = []  # (train seconds since warm-up, batches since warm-up)
        self.train_time = 0.0
        self.batches = 0  # micro-batches this fit (batch_idx restarts every epoch)
        self._t = None
        self.result: dict = {}
        self.start_step: int | None = None  # set when training starts (a resume at max_steps trains nothing)
        self._restored = False

    def setup(self, trainer, pl_module, stage):
        seq = pl_module.cfg.model.block_size
        pl_module.flops_per_batch = flops_per_batch(pl_module.cfg.model, self.samples_per_batch, seq)
        self.peak_flops, self.peak_flops_basis = available_flops(trainer.strategy.root_device,
                                                                 pl_module.cfg.train.precision)

    def _sync(self, trainer):
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step  # > 0 when resumed from a checkpoint
        if self._restored:  # steps remain: throughput is measured on the resumed part alone
            self.series, self.train_time, self.batches, self._restored = [], 0.0, 0, False
        reset_peak_memory(trainer.strategy.root_device)
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not math.isfinite(float(loss)):
            raise Diverged(trainer.global_step, float(loss))
        self._sync(trainer)
        now = time.perf_counter()
        self.train_time += now - self._t
        self._t = now
        self.batches += 1
        done = self.batches - self.warmup  # micro-batches since the end of warm-up
        if done == 0:
            self.series = [(self.train_time, 0)]
        elif done > 0 and self.series:
            self.series.append((self.train_time, done))

    def on_validation_start(self, trainer, pl_module):
        if self._t is not None:  # stop the train clock
            self._sync(trainer)
            self.train_time += time.perf_counter() - self._t
            self._t = None

    def on_validation_epoch_end(self, trainer, pl_module):
        # training seconds so far (clock stopped at on_validation_start), beside each validation point:
        # the x of the equal-time view (bench/results/views.py)
        pl_module.log("time/train_seconds", float(self.train_time))

    def on_validation_end(self, trainer, pl_module):
        if trainer.training or trainer.state.fn == "fit":
            self._t = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        device = trainer.strategy.root_device
        mem, mem_basis = peak_memory(device)
        self.result = {
            "tokens_per_sec": None, "mfu": None, "flops_per_batch": pl_module.flops_per_batch,
            "peak_flops": self.peak_flops, "mfu_basis": self.peak_flops_basis,
            "flops_basis": FLOPS_BASIS[pl_module.cfg.model.ffn],
            "peak_memory_bytes": mem, "peak_memory_basis": mem_basis,
            "train_seconds": self.train_time, "steady_steps": max(0, len(self.series) - 1),
            "world_size": trainer.world_size,
        }
        self.result.update(steady_state(self.series, self.tokens_per_batch, self.samples_per_batch,
                                        pl_module.flops_per_batch, self.peak_flops, trainer.world_size))


    # checkpoints: a cell resumed at its last step (nothing left to train) still reports the
    # throughput measured before the interruption
    def state_dict(self) -> dict:
        return {"series": list(self.series), "train_time": self.train_time, "batches": self.batches}

    def load_state_dict(self, state: dict) -> None:
        self.series = [tuple(p) for p in state["series"]]
        self.train_time, self.batches, self._restored = state["train_time"], state["batches"], True


def steady_state(series, tokens, samples, flops, peak_flops, world_size=1) -> dict:
    """Tokens/s and MFU over the whole post-warm-up window, through Lightning's Throughput.
    ``tokens``, ``samples``, ``flops`` are one device's micro-batch; under DDP/FSDP the ranks step in
    lockstep, so the totals are this rank's rates x world_size. tokens_per_sec and flops_per_sec are
    totals over ranks; mfu is total FLOP/s over (world_size x one device's peak)."""
    if len(series) < 2:
        return {}
    tp = Throughput(available_flops=peak_flops, world_size=world_size, window_size=len(series))
    for t, b in series:  # flops: one device's, Throughput multiplies by world_size
        tp.update(time=t, batches=b + 1, samples=(b + 1) * samples, lengths=(b + 1) * tokens, flops=flops)
    m = tp.compute()
    dev_tps, dev_flops = m.get("device/items_per_sec"), m.get("device/flops_per_sec")
    return {"tokens_per_sec": None if dev_tps is None else dev_tps * world_size, "mfu": m.get("device/mfu"),
            "flops_per_sec": None if dev_flops is None else dev_flops * world_size,
            "tokens_per_sec_per_device": dev_tps, "world_size": world_size,
            "tokens_per_sec_basis": f"total over {world_size} ranks" if world_size > 1 else "one device"}


class LiveProgress(L.Callback):
    """Feeds the current cell's step, loss and tok/s to a rich progress task."""

    def __init__(self, progress, task, tokens_per_batch: int, every: int = 5):
        self.progress, self.task, self.tokens_per_batch, self.every = progress, task, tokens_per_batch, every
        self._t0 = None

    def on_train_start(self, trainer, pl_module):
        self._t0, self._s0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every and step != trainer.max_steps:
            return
        loss = trainer.callback_metrics.get("train/loss")
        rate = (step - self._s0) * self.tokens_per_batch / max(1e-9, time.perf_counter() - self._t0)
        self.progress.update(self.task, completed=step, loss=f"{float(loss):.3f}" if loss is not None else "-",
                             tps=f"{rate:,.0f}")
