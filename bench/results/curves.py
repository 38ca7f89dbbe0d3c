"""Training curves: each cell's ``metrics.csv`` (written by bench/run/engine/curve_log.py, one file over
every resume) parsed, read, and read off as time-to-target; ``merge_curves`` joins the curve parts
an older version left after a resume.

One time column: ``time/train_seconds``, the training seconds (validation excluded) that
bench.run.engine.callbacks.CellMetrics logs at each validation; it continues across resumes. In curves
of older versions a resumed run's clock restarted at 0, so the stamps are made cumulative
(``cumulative``; a no-op on a rising clock). Curves without it fall back to an estimate, the
record's measured training seconds x step / steps (constant step time assumed), and say so.

Time-to-target: the first validation point whose loss is <= the target (resolution: the validation
interval, no interpolation); tokens = optimizer steps x tokens per step."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .records import Record, record_folders, write_text

TIME_COLUMN = "time/train_seconds"
Curve = dict[str, list[tuple[int, float]]]


def parse_curve(text: str) -> Curve:
    """A Lightning CSVLogger metrics.csv -> column -> [(step, value)] sorted by step, empty cells
    dropped. ``step`` is the logged (zero-based) optimizer step."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(text)):
        try:  # a garbled row (cut by a kill, overwritten) is skipped, not fatal
            s = int(float(row.get("step") or ""))
        except (ValueError, TypeError):
            continue
        for k, v in row.items():
            if k in ("step", "epoch") or k is None or v in (None, ""):
                continue
            try:
                out[k].append((s, float(v)))
            except (ValueError, TypeError):
                continue
    return {k: sorted(v, key=lambda x: x[0]) for k, v in out.items()}


def read_curve(path: Path) -> Curve | None:
    try:
        return parse_curve(Path(path).read_text())
    except (OSError, UnicodeDecodeError, csv.Error):  # missing or garbled beyond parsing: no curve
        return None


def load_curves(folder: Path) -> dict[str, Curve]:
    """Record id -> its parsed metrics.csv for every cell folder under ``folder`` (the cell folder's
    name is the record id; of two folders of one id, the one whose record counts)."""
    out = {}
    for cell_id, cell in record_folders(folder).items():
        curve = read_curve(cell / "metrics.csv")
        if curve:
            out[cell_id] = curve
    return out


def merge_curves(folder: Path) -> None:
    """After a resume: the curve parts saved before each resume, then the new metrics.csv, as one
    metrics.csv, byte-identical to an uninterrupted run's. A part's rows from the step the next
    part resumed training at are dropped (redone), and so is an old row the next part logged again
    (same step, same columns: e.g. the final validation, redone after a kill)."""
    folder = Path(folder)
    parts = sorted(folder.glob("metrics.part-*.csv")) + [folder / "metrics.csv"]
    rows, names = [], []
    for part in parts:
        if not part.exists():
            continue
        with open(part, newline="") as f:
            reader = csv.DictReader(f)
            names += [k for k in reader.fieldnames or [] if k not in names]
            new = [r for r in reader if _step(r) is not None]  # a row cut by a kill has no usable step
        trained = [_step(r) for r in new if r.get("train/loss")]
        if trained:
            rows = [r for r in rows if _step(r) < min(trained)]
        again = {_signature(r) for r in new}
        rows = [r for r in rows if _signature(r) not in again] + new
    buf = io.StringIO()
    # sorted, as Lightning's CSVLogger orders its columns
    writer = csv.DictWriter(buf, fieldnames=sorted(n for n in names if n), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / "metrics.csv", buf.getvalue())
    for part in parts[:-1]:
        part.unlink(missing_ok=True)


def _signature(row: dict) -> tuple:
    return _step(row), tuple(sorted(k for k, v in row.items() if k and v not in (None, "")))


def _step(row: dict) -> int | None:
    try:
        return int(row.get("step") or "")
    except ValueError:
        return None


def cumulative(stamps: list[float]) -> list[float]:
    """Training-seconds stamps made cumulative across resumes: a resumed run's clock restarts at 0,
    so after a drop the last stamp before it is added to the rest (time lost to the interruption
    itself is not counted)."""
    out, offset, last = [], 0.0, None
    for v in stamps:
        if last is not None and v < last:
            offset += last
        out.append(v + offset)
        last = v
    return out


def train_seconds(curve: Curve | None) -> dict[int, float]:
    """Logged step -> cumulative training seconds at that row ({} without the time column)."""
    pts = (curve or {}).get(TIME_COLUMN) or []
    return dict(zip((s for s, _ in pts), cumulative([v for _, v in pts])))


def steps_done(logged_step: int, total: int | None) -> int:
    """Lightning logs validation (and training) rows before it counts the optimizer step that just
    ran: logged step k means k + 1 steps done. A validation after fit logs the final count itself."""
    done = logged_step + 1
    return min(done, total) if total else done


def tokens_per_step(record: Record) -> int | None:
    """train.batch_size * model.block_size * train.grad_accum (per process, as the record counts)."""
    m = record.metrics
    if m.tokens and m.steps:
        return int(round(m.tokens / m.steps))
    cfg = record.config
    try:
        t, mod = cfg["train"], cfg["model"]
        return int(t["batch_size"]) * int(mod["block_size"]) * int(t.get("grad_accum", 1))
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True)
class TimeToTarget:
    target: float
    reached: bool
    step: int | None = None  # optimizer steps done at the first validation point <= target
    tokens: int | None = None
    seconds: float | None = None
    seconds_estimated: bool = True  # True: train_seconds * step / steps; False: from the time column
    loss: float | None = None  # the validation loss at that point


def time_to_target(record: Record, curve: Curve | None, target: float, column: str = "val/loss") -> TimeToTarget:
    """Tokens and seconds until the validation loss first reaches ``target`` (<=)."""
    if not curve or column not in curve:
        return TimeToTarget(target, False)
    m = record.metrics
    total = m.steps
    hit = next(((s, v) for s, v in curve[column] if v <= target), None)
    if hit is None:
        return TimeToTarget(target, False)
    logged, loss = hit
    step = steps_done(logged, total)
    tps = tokens_per_step(record)
    seconds, estimated = None, True
    before = [v for s, v in sorted(train_seconds(curve).items()) if s <= logged]
    if before:  # the last time stamp at or before the hit
        seconds, estimated = before[-1], False
    if seconds is None and m.train_seconds and total:
        seconds = float(m.train_seconds) * step / total
    return TimeToTarget(target, True, step, step * tps if tps else None, seconds, estimated, loss)
