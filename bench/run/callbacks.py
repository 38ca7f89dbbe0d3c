"""Callbacks: measured cost of a cell (throughput, MFU, memory, time), divergence, live progress."""

from __future__ import annotations

import dataclasses
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
    model_cfg = dataclasses.replace(model_cfg, kernels="reference")  # same FLOPs; a counter cannot trace a compiled path
    with torch.device("meta"):
        model = Transformer(model_cfg)
        x = torch.zeros(batch_size, seq_len, dtype=torch.long)
    return measure_flops(model, lambda: model(x), lambda logits: lm_loss(logits, x))


class CellMetrics(L.Callback):
    """Steady-state tokens/s and MFU (Lightning's Throughput over the steps after ``warmup``; time
    spent validating excluded), peak memory, wall time; stops a cell whose loss is not finite.

    Never synchronizes the device per step: the clock is read after a synchronization only at the
    window's edges (end of warm-up, validation start/end, end of training). The non-finite check
    runs on the device: a flag tensor keeps the first step whose loss was not finite (torch.where,
    no read-back), and the host reads it, with the latest loss, every ``nan_check_every`` steps, at
    validation and at the end. A divergence is therefore noticed up to nan_check_every - 1 steps
    late, but reported at the exact step it happened."""

    def __init__(self, tokens_per_batch: int, samples_per_batch: int, warmup: int, nan_check_every: int = 50):
        """warmup and nan_check_every count micro-batches (the runner multiplies by grad_accum)."""
        self.tokens_per_batch, self.samples_per_batch, self.warmup = tokens_per_batch, samples_per_batch, warmup
        self.nan_check_every = max(1, nan_check_every)
        self.series: list[tuple[float, int]] = []  # (train seconds, batches since warm-up) at the window's edges
        self.train_time = 0.0
        self.batches = 0  # micro-batches this fit (batch_idx restarts every epoch)
        self.host_loss: tuple[int, float] | None = None  # (step, loss) as of the last read-back
        self._t = None
        self._first_bad = None  # device tensor [step, loss] (fp32: steps exact to 2^24) of the first non-finite loss; step -1 = none
        self._last_loss = None
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

    def _clock(self, trainer) -> float:
        """Train seconds so far, after the device has finished its queued work."""
        self._sync(trainer)
        now = time.perf_counter()
        self.train_time += now - self._t
        self._t = now
        return self.train_time

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step  # > 0 when resumed from a checkpoint
        if self._restored:  # steps remain: throughput is measured on the resumed part alone
            self.series, self.train_time, self.batches, self._restored = [], 0.0, 0, False
        reset_peak_memory(trainer.strategy.root_device)
        self._first_bad = torch.tensor([-1.0, 0.0], dtype=torch.float32, device=trainer.strategy.root_device)
        self._sync(trainer)
        self._t = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        step = trainer.global_step
        if loss is not None:
            loss = loss.detach()
            self._last_loss = (step, loss)
            bad = ~torch.isfinite(loss) & (self._first_bad[0] < 0)  # the first one only
            self._first_bad = torch.where(bad, torch.stack([torch.full_like(self._first_bad[0], step),
                                                            loss.to(self._first_bad.dtype)]), self._first_bad)
        self.batches += 1
        done = self.batches - self.warmup  # micro-batches since the end of warm-up
        if done == 0:
            self.series = [(self._clock(trainer), 0)]
        self._done = done
        if self.batches % self.nan_check_every == 0:
            self.check_finite()

    def check_finite(self) -> None:
        """Read the device flag (one sync); raise Diverged at the first non-finite step."""
        if self._first_bad is None:
            return
        if self._last_loss is not None:
            step, loss = self._last_loss
            values = torch.cat([self._first_bad, loss.reshape(1).to(self._first_bad)]).tolist()
            self.host_loss = (step, values[2])
        else:
            values = self._first_bad.tolist()
        if values[0] >= 0:
            raise Diverged(int(values[0]), values[1])

    def on_validation_start(self, trainer, pl_module):
        if self._t is not None:  # stop the train clock
            self._clock(trainer)
            self._t = None
        if trainer.training:
            self.check_finite()

    def on_validation_epoch_end(self, trainer, pl_module):
        # training seconds so far (clock stopped at on_validation_start), beside each validation point:
        # the x of the equal-time view (bench/results/views.py)
        pl_module.log("time/train_seconds", float(self.train_time))

    def on_validation_end(self, trainer, pl_module):
        if trainer.training or trainer.state.fn == "fit":
            self._sync(trainer)
            self._t = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        if self._t is not None:
            self._clock(trainer)
        done = getattr(self, "_done", 0)
        if self.series and done > 0:
            self.series.append((self.train_time, done))
        device = trainer.strategy.root_device
        mem, mem_basis = peak_memory(device)
        self.result = {
            "tokens_per_sec": None, "mfu": None, "flops_per_batch": pl_module.flops_per_batch,
            "peak_flops": self.peak_flops, "mfu_basis": self.peak_flops_basis,
            "flops_basis": FLOPS_BASIS[pl_module.cfg.model.ffn],
            "peak_memory_bytes": mem, "peak_memory_basis": mem_basis,
            "train_seconds": self.train_time, "steady_steps": self.series[-1][1] if len(self.series) > 1 else 0,
            "world_size": trainer.world_size,
        }
        self.result.update(steady_state(self.series, self.tokens_per_batch, self.samples_per_batch,
                                        pl_module.flops_per_batch, self.peak_flops, trainer.world_size))
        self.check_finite()  # a divergence in the last steps: the result above is kept for the record

    # checkpoints: a cell resumed at its last step (nothing left to train) still reports the
    # throughput measured before the interruption
    def state_dict(self) -> dict:
        return {"series": list(self.series), "train_time": self.train_time, "batches": self.batches,
                "done": getattr(self, "_done", 0)}

    def load_state_dict(self, state: dict) -> None:
        self.series = [tuple(p) for p in state["series"]]
        self.train_time, self.batches, self._restored = state["train_time"], state["batches"], True
        self._done = state.get("done", 0)


def steady_state(series, tokens, samples, flops, peak_flops, world_size=1) -> dict:
    """Tokens/s and MFU over the whole post-warm-up window, through Lightning's Throughput.
    ``tokens``, ``samples``, ``flops`` are one device's micro-batch; under DDP/FSDP the ranks step in
    lockstep, so the totals are this rank's rates x world_size. tokens_per_sec and flops_per_sec are
    totals over ranks; mfu is total FLOP/s over (world_size x one device's peak)."""
    if len(series) < 2:
        return {}
    tp = Throughput(available_flops=peak_flops, world_size=world_size, window_size=len(series))
    prev = series[0][1]
    for t, b in series:
        # flops: one device's since the previous point (the series holds only the window's edges);
        # Throughput multiplies by world_size for the total and divides it back for the device's MFU
        tp.update(time=t, batches=b + 1, samples=(b + 1) * samples, lengths=(b + 1) * tokens,
                  flops=flops * (b - prev))
        prev = b
    m = tp.compute()
    dev_tps, dev_flops = m.get("device/items_per_sec"), m.get("device/flops_per_sec")
    return {"tokens_per_sec": None if dev_tps is None else dev_tps * world_size, "mfu": m.get("device/mfu"),
            "flops_per_sec": None if dev_flops is None else dev_flops * world_size,
            "tokens_per_sec_per_device": dev_tps, "world_size": world_size,
            "tokens_per_sec_basis": f"total over {world_size} ranks" if world_size > 1 else "one device"}


class LiveProgress(L.Callback):
    """Feeds the current cell's step, loss and tok/s to a rich progress task. Never reads a device
    tensor: the loss shown is the one CellMetrics last read back (every train.nan_check_every steps),
    so progress forces no synchronization."""

    def __init__(self, progress, task, tokens_per_batch: int, every: int = 5):
        self.progress, self.task, self.tokens_per_batch, self.every = progress, task, tokens_per_batch, every
        self._t0 = None
        self._metrics = None

    def on_train_start(self, trainer, pl_module):
        self._t0, self._s0 = time.perf_counter(), trainer.global_step
        self._metrics = next((cb for cb in trainer.callbacks if isinstance(cb, CellMetrics)), None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.every and step != trainer.max_steps:
            return
        host = self._metrics.host_loss if self._metrics is not None else None
        rate = (step - self._s0) * self.tokens_per_batch / max(1e-9, time.perf_counter() - self._t0)
        self.progress.update(self.task, completed=step, loss=f"{host[1]:.3f}" if host else "-", tps=f"{rate:,.0f}")
