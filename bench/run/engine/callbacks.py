"""Callbacks: measured cost of a cell (throughput, MFU, memory, time), divergence, held-out clock."""

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


_FLOPS: dict[tuple, int] = {}


def flops_per_batch(model_cfg, batch_size: int, seq_len: int) -> int:
    """Forward + backward FLOPs of one micro-batch, counted by PyTorch's FlopCounterMode (through
    Lightning's measure_flops) on a meta-device copy: no memory. Counted once per model and batch
    shape in a process (a fit and its final validation, a matrix's seeds: ~0.25 s each at nano)."""
    # same FLOPs; a counter cannot trace a compiled path
    model_cfg = dataclasses.replace(model_cfg, kernels="reference")
    key = (repr(model_cfg), batch_size, seq_len)
    if key not in _FLOPS:
        with torch.device("meta"):
            model = Transformer(model_cfg)
            x = torch.zeros(batch_size, seq_len, dtype=torch.long)
        _FLOPS[key] = measure_flops(model, lambda: model(x), lambda logits: lm_loss(logits, x))
    return _FLOPS[key]


class CellMetrics(L.Callback):
    """Steady-state tokens/s and MFU (Lightning's Throughput over the steps after ``warmup``), peak
    memory, train time; stops a cell whose loss is not finite.

    The train clock runs only while training: validation, checkpoint saves and probes are held out
    of it (``hold``/``go``). It continues across resumes: a checkpoint carries the train seconds and
    the measured throughput windows so far, so ``time/train_seconds`` and the record's
    ``train_seconds`` count each step once, and tokens/s pools every segment's window (each segment
    warms up again after a resume; the windows are pooled as total batches over total seconds).

    Never synchronizes the device per step: the clock is read after a synchronization only at the
    window's edges (end of warm-up, a hold and its end, end of training). The non-finite check
    runs on the device: a flag tensor keeps the first step whose loss was not finite (torch.where,
    no read-back), and the host reads it, with the latest loss, every ``nan_check_every`` steps, at
    validation and at the end. A divergence is therefore noticed up to nan_check_every - 1 steps
    late, but reported at the exact step it happened."""

    def __init__(self, tokens_per_batch: int, samples_per_batch: int, warmup: int, nan_check_every: int = 50):
        """warmup and nan_check_every count micro-batches (the runner multiplies by grad_accum)."""
        self.tokens_per_batch, self.samples_per_batch, self.warmup = tokens_per_batch, samples_per_batch, warmup
        self.nan_check_every = max(1, nan_check_every)
        self.windows: list[tuple[float, int]] = []  # (seconds, micro-batches) of each finished steady window
        self.train_time = 0.0  # train seconds over every segment of the cell
        self.batches = 0  # micro-batches this segment (warm-up restarts after a resume)
        self.host_loss: tuple[int, float] | None = None  # (step, loss) as of the last read-back
        self._t = None  # clock start while running; None while held or stopped
        self._window_t0 = None  # train_time when this segment's window opened
        self._training = False
        # device tensor [step, loss] (fp32: steps exact to 2^24) of the first non-finite loss; step -1 = none
        self._first_bad = None
        self._last_loss = None
        self.result: dict = {}
        self.start_step: int | None = None  # set when training starts (a resume at max_steps trains nothing)
        self._holds = 0  # nested holds of the clock
        self._device = None

    def setup(self, trainer, pl_module, stage):
        seq = pl_module.cfg.model.block_size
        self._device = trainer.strategy.root_device
        pl_module.flops_per_batch = flops_per_batch(pl_module.cfg.model, self.samples_per_batch, seq)
        self.peak_flops, self.peak_flops_basis = available_flops(trainer.strategy.root_device,
                                                                 pl_module.cfg.train.precision)

    def _sync(self):
        if self._device is not None and self._device.type == "cuda":
            torch.cuda.synchronize()

    def hold(self) -> None:
        """Stop the train clock (validation, a checkpoint save, probes), after the queued work."""
        self._holds += 1
        if self._t is not None:
            self._sync()
            self.train_time += time.perf_counter() - self._t
            self._t = None

    def go(self) -> None:
        """End a hold; the clock runs again when no hold is left (a no-op outside training)."""
        self._holds = max(0, self._holds - 1)
        if self._t is None and self._training and not self._holds:
            self._sync()
            self._t = time.perf_counter()

    def _window(self) -> list[tuple[float, int]]:
        """The finished windows and this segment's window so far (the clock must be held)."""
        done = self.batches - self.warmup
        if self._window_t0 is None or done <= 0 or self.train_time <= self._window_t0:
            return list(self.windows)
        return [*self.windows, (self.train_time - self._window_t0, done)]

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step  # > 0 when resumed from a checkpoint
        self.batches, self._window_t0, self._training, self._holds = 0, None, True, 0
        reset_peak_memory(trainer.strategy.root_device)
        self._first_bad = torch.tensor([-1.0, 0.0], dtype=torch.float32, device=trainer.strategy.root_device)
        self._t = None
        self._sync()
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
        if self.batches == self.warmup:  # the window opens: read the clock once
            self.hold()
            self._window_t0 = self.train_time
            self.go()
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
        self.hold()
        if trainer.training:
            self.check_finite()

    def on_validation_epoch_end(self, trainer, pl_module):
        # training seconds so far (clock held since on_validation_start), beside each validation point:
        # the x of the equal-time view (bench/results/views.py)
        pl_module.log("time/train_seconds", float(self.train_time))

    def on_validation_end(self, trainer, pl_module):
        self.go()

    def on_train_end(self, trainer, pl_module):
        self.hold()
        self.windows, self._window_t0, self._training = self._window(), None, False
        device = trainer.strategy.root_device
        mem, mem_basis = peak_memory(device)
        self.result = {
            "tokens_per_sec": None, "mfu": None, "flops_per_batch": pl_module.flops_per_batch,
            "peak_flops": self.peak_flops, "mfu_basis": self.peak_flops_basis,
            "flops_basis": FLOPS_BASIS[pl_module.cfg.model.ffn],
            "peak_memory_bytes": mem, "peak_memory_basis": mem_basis,
            "train_seconds": self.train_time, "steady_steps": sum(b for _, b in self.windows),
            "world_size": trainer.world_size, "throughput_segments": len(self.windows),
        }
        series = pooled_series(self.windows)
        self.result.update(steady_state(series, self.tokens_per_batch, self.samples_per_batch,
                                        pl_module.flops_per_batch, self.peak_flops, trainer.world_size))
        if self.result["tokens_per_sec"] is None:
            self.result["tokens_per_sec_basis"] = (
                f"not measured: no step after the throughput warm-up ({self.warmup} micro-batches) in any segment: "
                "raise train.max_steps or lower train.throughput_warmup")
        self.check_finite()  # a divergence in the last steps: the result above is kept for the record

    # checkpoints: the train seconds and the throughput measured so far travel with the cell, so a
    # resume continues the time axis and a resume at the last step still reports tokens/s
    def state_dict(self) -> dict:
        self.hold()  # a save is held out of the clock anyway (PeriodicCheckpoint); read it now
        state = {"windows": self._window(), "train_time": self.train_time}
        self.go()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.windows = [(float(s), int(b)) for s, b in state.get("windows", [])]
        self.train_time = float(state["train_time"])


def pooled_series(windows) -> list[tuple[float, int]]:
    """Window edges for steady_state from several windows: their seconds and batches laid end to
    end, so the rate is total batches over total seconds."""
    series, t, b = [(0.0, 0)], 0.0, 0
    for seconds, batches in windows:
        if seconds > 0 and batches > 0:
            t, b = t + seconds, b + batches
            series.append((t, b))
    return series if len(series) > 1 else []


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


class HeldOut(L.Callback):
    """Holds ``clock`` (CellMetrics) out of the callbacks placed between an opening and a closing
    HeldOut: the probes, which sample in on_before_optimizer_step at their steps. It acts only at
    those steps (``every``, the first and the last), so other steps pay no synchronization.
    ``progress`` (bench/run/engine/progress.py), if given, shows the probes' phase."""

    def __init__(self, clock, every: int, opening: bool, progress=None):
        self.clock, self.every, self.opening, self.progress = clock, every, opening, progress

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        step = trainer.global_step
        if self.every > 0 and (step % self.every == 0 or step == trainer.max_steps - 1):
            self.clock.hold() if self.opening else self.clock.go()
            if self.progress is not None:
                self.progress.set_phase(trainer, "probes" if self.opening else "train")
