"""Checkpoints that survive kills and full disks: written to a temp file, fsynced, renamed into place,
with the previous good one kept as ``previous.ckpt``; checked before a resume, damaged ones set aside."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ...atomic import fsync_dir
from ...faults import pause_point

LATEST, PREVIOUS = "latest.ckpt", "previous.ckpt"


class _Recording:
    """A file that remembers the OSError of a failed write: torch.save reports a full disk as a
    RuntimeError ("unexpected pos"), and the cause must reach the user as the disk-full line."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self):
        try:
            return self.f.flush()
        except OSError as e:
            self.error = e
            raise


def _unique_tmp(path: Path) -> Path:
    """A temp name in ``path``'s folder that no other writer uses (two runs may save one cell)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temp file unique to this writer, fsync, then: the current file becomes
    ``previous.ckpt`` (a hard link, so a file named ``latest.ckpt`` exists at every instant) and the
    temp file is renamed over it. A kill or an OSError (ENOSPC) at any point leaves the last good
    checkpoint untouched; a full disk is raised as the OSError it is. ``before_commit`` (the claim's
    check) runs once the temp file is whole, before anything in place is touched: a run that lost
    its claim raises there and leaves the new holder's checkpoints as they are."""

    def __init__(self, before_commit=None):
        super().__init__()
        self.before_commit = before_commit

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        step = checkpoint.get("global_step")
        tmp, keep = _unique_tmp(path), None
        try:
            with open(tmp, "wb") as f:
                out = _Recording(f)
                try:
                    torch.save(checkpoint, out)
                    out.flush()
                except RuntimeError:
                    if out.error is not None:
                        raise out.error from None
                    raise
                os.fsync(f.fileno())
            pause_point("checkpoint-written", step)
            if self.before_commit is not None:
                self.before_commit()
            if path.exists():
                keep = _unique_tmp(path.with_name(PREVIOUS))
                keep.unlink()
                os.link(path, keep)
                os.replace(keep, path.with_name(PREVIOUS))
                pause_point("checkpoint-rotated", step)
            os.replace(tmp, path)
            fsync_dir(path.parent)
            pause_point("checkpoint-saved", step)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if keep is not None:
                keep.unlink(missing_ok=True)
            raise

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)


def damage(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (None if it loads): the zip archive torch.save writes
    must open, every member's CRC must match (a truncated or garbled file fails), and it must
    unpickle into a Lightning checkpoint."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
            if bad is not None:
                return f"member {bad} fails its CRC check"
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return "no data.pkl: not a torch checkpoint"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    try:  # whole but unloadable (a foreign pickle, a class that no longer exists): mmap reads no tensor
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any reason a resume would fail on is a reason to set it aside
        return f"cannot be loaded: {type(e).__name__}: {e}"
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "global_step" not in ckpt:
        return "not a Lightning checkpoint (no state_dict / global_step)"
    return None


def checkpoint_step(path: Path) -> int:
    """The optimizer step a checkpoint was taken at (its tensors are mapped, not read)."""
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["global_step"])


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

    def __init__(self, path, every: int, val_every: int, clock=None):
        """``clock``: the cell's CellMetrics, whose train clock a save is held out of."""
        self.path, self.every, self.val_every, self.clock = Path(path), every, val_every, clock
        self.saved_step: int | None = None  # the step of the last save
        self.interrupt_step: int | None = None  # set when saved because of a signal
        self._pending = False
        self._row = None  # the curve row of the step being saved, not yet logged at on_train_batch_end
        self._replay = None  # restored from a checkpoint: logged again once (a kill may have lost it)

    # Lightning logs a step's train row after on_train_batch_end, where this saves: a kill between
    # the save and the log would lose the row, since the resume starts after that step. The
    # checkpoint carries the row and the resumed run logs it again (the curve writer keeps one copy).
    def state_dict(self) -> dict:
        return {"row": self._row}

    def load_state_dict(self, state: dict) -> None:
        self._replay = state.get("row")

    def replay_row(self, trainer) -> None:
        if self._replay and trainer.loggers:
            row, step = self._replay
            trainer._logger_connector.log_metrics(dict(row), step=step)
        self._replay = None

    def _pending_row(self, trainer):
        """The train row Lightning logs right after this hook, if this step logs one."""
        from lightning.fabric.utilities.apply_func import convert_tensors_to_scalars

        lc = trainer._logger_connector
        if not trainer.loggers or not lc.should_update_logs:
            return None
        row = convert_tensors_to_scalars(lc.metrics["log"])
        if not row:
            return None
        return {**row, "epoch": trainer.current_epoch}, trainer.fit_loop.epoch_loop._batches_that_stepped

    def on_train_start(self, trainer, pl_module):
        self.replay_row(trainer)

    def _save(self, trainer, row=None) -> None:
        self._row = row
        if self.clock is not None:
            self.clock.hold()
        try:
            trainer.save_checkpoint(self.path)
        finally:
            if self.clock is not None:
                self.clock.go()
        self.saved_step, self._pending = trainer.global_step, False

    def _validates(self, step: int) -> bool:
        return self.val_every > 0 and step % self.val_every == 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if trainer.fit_loop.epoch_loop._should_accumulate() or step == self.saved_step:
            return  # between the micro-batches of one step
        if trainer.received_sigterm:  # Lightning raises SIGTERMException right after this batch
            if not self._validates(step) or step >= trainer.max_steps:
                self._save(trainer, self._pending_row(trainer))
                self.interrupt_step = step
            return
        if step % self.every == 0 or step >= trainer.max_steps:
            if self._validates(step):
                self._pending = True
            else:
                self._save(trainer, self._pending_row(trainer))

    def on_validation_end(self, trainer, pl_module):
        if self._pending and trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._save(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self._pending:  # the expected validation did not run: save now, before this batch's work
            self._save(trainer)

    def on_train_end(self, trainer, pl_module):
        if self._pending or self.saved_step != trainer.global_step:
            self._save(trainer)  # the final checkpoint: what follows is redone from it, not retrained
