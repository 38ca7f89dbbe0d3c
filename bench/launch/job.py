"""The one unit of work every launcher runs: claim a cell, train it, record it, release it.

`bench run --workers N` children and SLURM array tasks call ``run_cells`` on their share of the
matrix; a claim (claims.py) on the cell's results folder makes two of them never train the same
cell, and a cell finished meanwhile by someone else is not trained again.
"""

from __future__ import annotations

import datetime as dt
import sys

from ..results.records import DONE, cell_dir, read_record
from .claims import acquire
from .ranks import is_rank_zero

HELD: set = set()  # claims this process holds now (released by a SLURM task's checkpoint())


def release_held() -> None:
    for claim in list(HELD):
        claim.release()
        HELD.discard(claim)


def finished(record: dict | None, fresh_after: str | None = None) -> bool:
    """Done, and (with --force) trained after ``fresh_after`` (an ISO time) by this launch."""
    if record is None or record.get("status") not in DONE:
        return False
    return fresh_after is None or str(record.get("started", "")) >= fresh_after


def claim_train_release(cell, matrix_name: str, opts, data, progress=None, fresh_after: str | None = None,
                        log=None) -> dict | None:
    """Train ``cell`` under its claim; None when another live process holds it. Other DDP ranks
    follow rank 0 without claiming (rank 0 holds the claim for the whole cell)."""
    from ..run.runner import train_cell

    log = log or (lambda msg: print(msg, file=sys.stderr))
    folder = cell_dir(opts.out, matrix_name, cell.id)
    claim = acquire(folder, log=log) if is_rank_zero() else None
    if claim is None and is_rank_zero():
        return None
    if claim is not None:
        HELD.add(claim)
    try:
        rec = read_record(folder / "record.json")
        if finished(rec, fresh_after if opts.force else None):
            return rec  # finished by another process between our listing and our claim
        return train_cell(cell, matrix_name, data.get(cell.config), opts, progress)
    finally:
        if claim is not None:
            claim.release()
            HELD.discard(claim)


def run_cells(matrix_name: str, cells, opts, progress=None, fresh_after: str | None = None, log=None,
              on_record=None) -> list[dict]:
    """Every cell not finished and not claimed by a live holder, in order; returns what it trained."""
    from ..run.runner import DataCache

    data, done = DataCache(), []
    for cell in cells:
        rec = read_record(cell_dir(opts.out, matrix_name, cell.id) / "record.json")
        if finished(rec, fresh_after if opts.force else None):
            continue
        rec = claim_train_release(cell, matrix_name, opts, data, progress, fresh_after, log)
        if rec is not None:
            done.append(rec)
            if on_record is not None:
                on_record(rec)
    return done


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
