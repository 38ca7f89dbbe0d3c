"""Run records on disk: results/<matrix>/<cell id>/record.json, written atomically."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

RESULTS = Path("results")
STATUSES = ("ok", "diverged", "oom", "failed")  # a record with any other status is incomplete
DONE = ("ok", "diverged")  # not trained again on a rerun; failed and oom cells are retried


def cell_dir(out: Path, matrix: str, cell_id: str) -> Path:
    return Path(out) / matrix / cell_id


def write_text(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: a reader sees the old or the new file,
    never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; results are meant to be shared
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, default=str))


def read_record(path: Path) -> dict | None:
    """A complete record, or None (missing or unreadable files are never taken as complete)."""
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) and rec.get("status") in STATUSES else None


def load_records(folder: Path) -> list[dict]:
    """Every complete record under a matrix folder (or a folder of matrix folders)."""
    folder = Path(folder)
    return [r for p in sorted(folder.glob("**/record.json")) if (r := read_record(p)) is not None]


def merge_curves(folder: Path) -> None:
    """After a resume: the curve parts saved before each resume, then the new metrics.csv, as one
    metrics.csv (rows of a part past the step it was resumed from are dropped: they were redone)."""
    folder = Path(folder)
    parts = sorted(folder.glob("metrics.part-*.csv")) + [folder / "metrics.csv"]
    rows, fields = [], []
    for part in parts:
        if not part.exists():
            continue
        with open(part, newline="") as f:
            reader = csv.DictReader(f)
            fields += [k for k in reader.fieldnames or [] if k not in fields]
            new = list(reader)
        if new and rows:  # drop old rows the resumed run repeated
            first = min(int(r["step"]) for r in new if r.get("step"))
            rows = [r for r in rows if r.get("step") and int(r["step"]) < first]
        rows += new
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(folder / "metrics.csv", buf.getvalue())
    for part in parts[:-1]:
        part.unlink(missing_ok=True)
