"""A cell's progress as it trains: the live display's task (rich, or a worker's status file) and, when
stderr is not a terminal (nohup, CI, SLURM, a worker's log), one line every few seconds.

Both say what the cell is doing now, its phase: train, validate, probes or checkpoint. Nothing here
reads a device tensor: the loss shown is the one CellMetrics last read back (every
train.nan_check_every steps and at each validation), so progress forces no synchronization."""

from __future__ import annotations

import sys
import time

import lightning as L

from ...console import clock, progress_line
from .callbacks import CellMetrics


class CellProgress(L.Callback):
    """Feeds the current cell's step, loss, tok/s and phase to a progress task (every ``every``
    steps) and, with ``log_every`` seconds (None: never), writes them as one line to ``stream``:
    ``<cell>: step 12/60, loss 4.123, 2,345 tok/s, ETA 0:01:23, phase train``."""

    def __init__(self, cell_id: str, tokens_per_batch: int, progress=None, task=None, every: int = 5,
                 log_every: float | None = None, stream=None):
        self.cell_id, self.tokens_per_batch = cell_id, tokens_per_batch
        self.progress, self.task, self.every = progress, task, every
        self.log_every, self.stream = log_every, stream
        self.phase, self.step, self.total = "train", 0, 0
        self._t0, self._s0, self._last_line = None, 0, None
        self._metrics = None
        self.probing = False  # end-of-training probes run in on_train_end (after this callback's)

    # ---- what is shown
    def _loss(self) -> str:
        host = self._metrics.host_loss if self._metrics is not None else None
        return f"{host[1]:.3f}" if host else "-"

    def _rate(self) -> float | None:
        if self._t0 is None or self.step <= self._s0:
            return None
        return (self.step - self._s0) / max(1e-9, time.perf_counter() - self._t0)  # steps/s

    def _fields(self) -> dict:
        rate = self._rate()
        return {"loss": self._loss(), "tps": f"{rate * self.tokens_per_batch:,.0f}" if rate else "-",
                "eta": clock((self.total - self.step) / rate) if rate and self.total else "-", "phase": self.phase}

    def line(self) -> str:
        return progress_line(self.cell_id, self.step, self.total, **self._fields())

    def _show(self, trainer, force_task: bool = False) -> None:
        self.step = trainer.global_step
        if self.progress is not None and (force_task or self.step % self.every == 0 or self.step == self.total):
            self.progress.update(self.task, completed=self.step, **self._fields())
        now = time.perf_counter()
        if self.log_every is not None and (self._last_line is None or now - self._last_line >= self.log_every):
            self._last_line = now
            print(self.line(), file=self.stream or sys.stderr, flush=True)

    def set_phase(self, trainer, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self._show(trainer, force_task=True)

    # ---- Lightning hooks
    def setup(self, trainer, pl_module, stage):
        self.total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else 0
        self._metrics = next((cb for cb in trainer.callbacks if isinstance(cb, CellMetrics)), None)

    def on_train_start(self, trainer, pl_module):
        self._t0, self._s0 = time.perf_counter(), trainer.global_step
        self.set_phase(trainer, "train")
        self._show(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.set_phase(trainer, "train")  # after a checkpoint save or probes

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._show(trainer)

    def on_validation_start(self, trainer, pl_module):
        self.set_phase(trainer, "validate")

    def on_validation_batch_end(self, trainer, *args, **kwargs):
        self._show(trainer)

    def on_validation_end(self, trainer, pl_module):
        if trainer.state.fn == "fit":
            self.set_phase(trainer, "train")

    def on_train_end(self, trainer, pl_module):
        if self.probing:
            self.set_phase(trainer, "probes")

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.set_phase(trainer, "checkpoint")  # called before the file is written
