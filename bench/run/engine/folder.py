"""A cell's results folder between runs, read without loading the training stack (for `bench status`
and the launchers): its record, whether it is finished, what killed runs left in it, and tidying
that away."""

from __future__ import annotations

import shutil
from pathlib import Path

from ...atomic import TEMP_GLOB, remove_stale_temps
from ...results.records import DONE, Record, read_record
from .claims import CLAIM, TEMP_PREFIX, acquire, remove_stale_claim_temps


def record_of(folder: Path) -> Record | None:
    """The cell's valid Record, or None (missing, unreadable, or still 'running')."""
    path = Path(folder) / "record.json"
    if not path.exists():
        return None
    rec, _ = read_record(path)
    return rec


def finished(record, fresh_after: str | None = None) -> bool:
    """Done, and (with --force) trained after ``fresh_after`` (an ISO time) by this launch."""
    if record is None or record.status not in DONE:
        return False
    return fresh_after is None or str(record.started or "") >= fresh_after


def leftovers(folder: Path) -> bool:
    """Whether a cell folder holds what a run leaves behind only when it is killed: a claim, claim
    temp files or a takeover lock, writers' temp files (a live run's claim counts: ``tidy`` asks)."""
    folder = Path(folder)
    return ((folder / CLAIM).exists() or (folder / f"{CLAIM}.takeover").exists()
            or any(folder.glob(f"{TEMP_PREFIX}*")) or any(folder.glob(TEMP_GLOB))
            or any((folder / "checkpoints").glob(TEMP_GLOB)))


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def tidy(folder: Path, stale_after: float, keep_checkpoints: bool, done: bool) -> str | None:
    """Remove what killed runs left in a cell folder no live run holds: its stale claim, temp files,
    and, for a finished cell (``done``), its checkpoints unless ``keep_checkpoints`` (a run killed
    between its record and its cleanup leaves both checkpoints: 100 GB at 7B). Returns what it
    removed, None when nothing was left or a live run holds the cell."""
    if not leftovers(folder):
        return None
    said: list[str] = []
    had_claim = (Path(folder) / CLAIM).exists()
    claim = acquire(folder, stale_after=stale_after, log=said.append)
    if claim is None:  # a live run trains it (or tidies it) now
        return None
    try:
        temps = remove_stale_temps(folder) + remove_stale_claim_temps(folder)
        removed = [f"{len(temps)} temp file(s)"] if temps else []
        ckpt = Path(folder) / "checkpoints"
        if done and not keep_checkpoints and ckpt.exists():
            size = _size(ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
            removed.append(f"checkpoints ({size / 2**20:,.1f} MiB)")
    finally:
        claim.release()
    if had_claim and said:
        removed.insert(0, "a stale claim")
    return ", ".join(removed) or None
