"""A cell's ``metrics.csv``: one file for the cell's whole life, each row once, whole at every instant.

Lightning's CSVLogger deletes the file when a logger opens it (a resume would start a new curve) and
rewrites it in place, truncated first, whenever a new column appears (a reader or a kill then
finds it half-written). ``CurveLogger`` is that logger with another writer:
- a resume first drops the rows logged after the checkpoint's step (they are logged again by the
  resumed run), with one atomic rewrite (bench/atomic.py), then appends to the same file;
- a new column rewrites the file atomically; other rows are appended, each in one write;
- a row whose step and columns are already in the file is not logged twice (the checkpoint's
  replayed train row, bench/run/engine/checkpoints.py);
- before each write the cell's claim is re-read (``held``): a run whose claim was taken over drops
  its pending rows and writes no more (the curve is the new holder's).
"""

from __future__ import annotations

import csv
import errno
import io
import os
from pathlib import Path

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ...atomic import atomic_write
from ...results.curves import merge_curves

METRICS = "metrics.csv"


def _step(row: dict) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None


def _signature(row: dict) -> tuple:
    return _step(row), tuple(sorted(k for k, v in row.items() if k and v not in (None, "")))


def _render(rows: list[dict], names: list[str], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names, extrasaction="ignore")  # as Lightning's writer
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def read_rows(path: Path) -> tuple[list[dict], list[str]]:
    """The rows (values as the file holds them) and columns of a curve; a row without a usable step
    (cut by a kill, garbled) is dropped."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            rows = [{k: v for k, v in r.items() if k is not None} for r in reader if _step(r) is not None]
            return rows, [n for n in reader.fieldnames or [] if n]
    except FileNotFoundError:
        return [], []


def columns(rows: list[dict]) -> list[str]:
    """Sorted, as Lightning's CSVLogger orders its columns; only those some row fills."""
    return sorted({k for r in rows for k, v in r.items() if k and v not in (None, "")} | {"step"})


def truncate_after(path: Path, step: int) -> None:
    """Keep the rows logged before ``step`` (a checkpoint's global step: the resumed run logs every
    later row again), in one atomic rewrite: a reader sees the old curve or the kept one."""
    path = Path(path)
    if not path.exists():
        return
    rows, _ = read_rows(path)
    kept, seen = [], set()
    for r in sorted((r for r in rows if _step(r) < step), key=_step):  # stable: a step's rows keep their order
        if _signature(r) not in seen:  # rows planted out of order or twice go: each step once, in order
            seen.add(_signature(r))
            kept.append(r)
    atomic_write(path, _render(kept, columns(kept), True) if kept else "")


def start_curve(folder: Path, resume_step: int | None) -> None:
    """Before a cell trains: a fresh cell starts a new curve; a resume keeps the rows before its
    checkpoint's step. Curve parts an older version left after a resume are merged first."""
    path = Path(folder) / METRICS
    if resume_step is None:
        path.unlink(missing_ok=True)
        return
    if any(Path(folder).glob("metrics.part-*.csv")):
        merge_curves(folder)
    truncate_after(path, resume_step)


class CurveWriter(ExperimentWriter):
    """Continues the curve already in ``log_dir/metrics.csv`` (see the module docstring)."""

    def __init__(self, log_dir: str, held=None) -> None:
        self.metrics, self.hparams = [], {}
        self.log_dir, self.held = log_dir, held
        self.metrics_file_path = os.path.join(log_dir, METRICS)
        os.makedirs(log_dir, exist_ok=True)
        rows, names = read_rows(Path(self.metrics_file_path))
        self.metrics_keys = names if rows else []
        self._seen = {_signature(r) for r in rows}
        self._whole = bool(rows)  # False: the file is empty or was cut short: rewrite it whole once

    def save(self) -> None:
        """Write the rows logged since the last save; on failure (a full disk) the file is as it was
        and the rows stay pending."""
        if not self.metrics:
            return
        if self.held is not None and not self.held():
            self.metrics = []  # the claim is another run's now: its curve, not ours
            return
        new = [r for r in _as_written(self.metrics) if _signature(r) not in self._seen]
        if new:
            self._write(new)
            self._seen.update(_signature(r) for r in new)
        self.metrics = []

    def _write(self, new: list[dict]) -> None:
        names = sorted(set(self.metrics_keys) | {k for r in new for k in r})
        path = Path(self.metrics_file_path)
        if names == self.metrics_keys and self._whole:
            _append(path, _render(new, names, False).encode())
            return
        rows, _ = read_rows(path) if self._whole else ([], [])
        atomic_write(path, _render(rows + new, names, True))
        self.metrics_keys, self._whole = names, True


def _as_written(metrics: list[dict]) -> list[dict]:
    """Lightning's logged values as the csv module writes them (strings), to compare with the file."""
    rows = []
    for m in metrics:
        names = sorted(m)
        text = _render([m], names, True)
        rows.extend({k: v for k, v in r.items() if v != ""} for r in csv.DictReader(io.StringIO(text)))
    return rows


def _append(path: Path, data: bytes) -> None:
    """Rows appended in one write: a kill lands before or after it. A short write (full disk) is
    taken back, so the file never ends in half a row."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
        except OSError:
            os.ftruncate(fd, size)
            raise
        if written != len(data):
            os.ftruncate(fd, size)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    finally:
        os.close(fd)


class CurveLogger(CSVLogger):
    """Lightning's CSVLogger writing ``folder/metrics.csv`` through CurveWriter."""

    def __init__(self, folder: Path, held=None):
        super().__init__(folder, name="", version="")
        self._held = held

    @property
    @rank_zero_experiment
    def experiment(self) -> CurveWriter:
        if self._experiment is None:
            self._experiment = CurveWriter(self.log_dir, self._held)
        return self._experiment
