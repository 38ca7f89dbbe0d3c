"""One way to write a file that a kill, a full disk or a concurrent reader never sees half-written:
a temp file in the same folder, unique to this writer, fsynced, then renamed over the target."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from .faults import pause_point

TEMP_GLOB = ".*.tmp"  # the names mkstemp gives here and in AtomicCheckpointIO
TEMP_AGE = 3600.0  # seconds: a temp file this old outside a claimed cell was left by a killed writer


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some filesystems refuse a directory fsync)."""
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


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically; a reader sees the old file or the new one, never a mix.
    The temp name is unique per call (mkstemp), so two writers never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600; results are meant to be shared
            os.fsync(f.fileno())
        pause_point("temp-written")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj, indent: int | None = 2) -> None:
    """``obj`` (or ``obj.to_dict()``) as JSON, atomically."""
    obj = obj.to_dict() if hasattr(obj, "to_dict") else obj
    atomic_write(path, json.dumps(obj, indent=indent, default=str) + ("\n" if indent is not None else ""))


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temp files that writers killed before their rename left in ``folder`` and its
    ``checkpoints/``. Only the holder of the folder's claim may call it: every writer of a cell
    folder holds that claim, so no live writer owns one of these files."""
    folder = Path(folder)
    gone = [*folder.glob(TEMP_GLOB), *(folder / "checkpoints").glob(TEMP_GLOB)]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def remove_old_temps(folder: Path, older_than: float = TEMP_AGE) -> list[Path]:
    """Delete the temp files in ``folder`` (not below it) older than ``older_than`` seconds: for the
    files no claim guards (a matrix folder's leaderboards and report), whose writers hold a temp file
    for milliseconds, so an old one was left by a kill."""
    return remove_older(Path(folder).glob(TEMP_GLOB), older_than)


def remove_older(paths, older_than: float) -> list[Path]:
    """Delete those of ``paths`` last modified more than ``older_than`` seconds ago (a path gone meanwhile
    is skipped); the ones deleted."""
    gone, now = [], time.time()
    for path in paths:
        try:
            if now - path.stat().st_mtime > older_than:
                path.unlink()
                gone.append(path)
        except FileNotFoundError:
            pass
    return gone
