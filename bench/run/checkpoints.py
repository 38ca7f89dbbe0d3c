"""Checkpoints that survive kills and full disks: written to a temp file, fsynced, renamed into place,
with the previous good one kept as ``previous.ckpt``; checked before a resume, damaged ones set aside."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

LATEST, PREVIOUS = "latest.ckpt", "previous.ckpt"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to ``.<name>.tmp``, fsync, then: the current file becomes ``previous.ckpt`` (a hard
    link, so a file named ``latest.ckpt`` exists at every instant) and the temp file is renamed over
    it. A kill or an OSError (ENOSPC) at any point leaves the last good checkpoint untouched."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            if path.exists():
                keep = path.with_name(f".{PREVIOUS}.tmp")
                keep.unlink(missing_ok=True)
                os.link(path, keep)
                os.replace(keep, path.with_name(PREVIOUS))
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


def damage(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (None if it looks whole): the zip archive torch.save
    writes must open and every member's CRC must match (a truncated or garbled file fails)."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                return f"member {bad} fails its CRC check"
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return "no data.pkl: not a torch checkpoint"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def find_resume(ckpt_dir: Path, warn) -> Path | None:
    """The newest whole checkpoint of a cell (latest, else previous), None to start from scratch.
    A damaged file is renamed to ``<name>.damaged`` (kept for inspection) with a one-line warning."""
    for name in (LATEST, PREVIOUS):
        path = Path(ckpt_dir) / name
        if not path.is_file():
            continue
        why = damage(path)
        if why is None:
            return path
        aside = path.with_name(path.name + ".damaged")
        os.replace(path, aside)
        warn(f"damaged checkpoint {path} set aside as {aside.name} ({why})")
    return None


class PeriodicCheckpoint(L.Callback):
    """``latest.ckpt`` every ``every`` optimizer steps, at the last step, and at the step boundary
    where Lightning stopped on SIGTERM. At a step that also validates, the save waits for the end of
    that validation: a checkpoint taken before it would resume past it and lose its curve row."""

    def __init__(self, path, every: int, val_every: int):
        self.path, self.every, self.val_every = Path(path), every, val_every
        self.saved_step: int | None = None  # the step of the last save
        self.interrupt_step: int | None = None  # set when saved because of a signal
        self._pending = False

    def _save(self, trainer) -> None:
        trainer.save_checkpoint(self.path)
        self.saved_step, self._pending = trainer.global_step, False

    def _validates(self, step: int) -> bool:
        return self.val_every > 0 and step % self.val_every == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if trainer.fit_loop.epoch_loop._should_accumulate() or step == self.saved_step:
            return  # between the micro-batches of one step
        if trainer.received_sigterm:  # Lightning raises SIGTERMException right after this batch
            if not self._validates(step) or step >= trainer.max_steps:
                self._save(trainer)
                self.interrupt_step = step
            return
        if step % self.every == 0 or step >= trainer.max_steps:
            if self._validates(step):
                self._pending = True
            else:
                self._save(trainer)

    def on_validation_end(self, trainer, pl_module):
        if self._pending and trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._pending:  # the expected validation did not run: save now, before this batch's work
            self._save(trainer)

    def on_train_end(self, trainer, pl_module):
        if self._pending or self.saved_step != trainer.global_step:
            self._save(trainer)  # the final checkpoint: what follows is redone from it, not retrained
