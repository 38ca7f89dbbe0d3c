"""The one unit of work every launcher runs: claim a cell, train it, record it, release it.

`bench run --workers N` children and SLURM array tasks call ``run_cells`` on their share of the
matrix; a claim (claims.py) on the cell's results folder makes two of them never train the same
cell, and a cell finished meanwhile by someone else is not trained again.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from ..results.records import DONE, cell_dir, read_record
from .claims import acquire
from .ranks import RankDecisions

HELD: set = set()  # claims this process holds now (released by a SLURM task's checkpoint())


def release_held() -> None:
    for claim in list(HELD):
        claim.release()
        HELD.discard(claim)


def record_of(folder: Path):
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


def claim_train_release(cell, matrix_name: str, opts, data, progress=None, fresh_after: str | None = None,
                        log=None, ranks: RankDecisions | None = None) -> dict | None:
    """Train ``cell`` under its claim; None when another live process holds it. Other ranks of a
    multi-device cell follow rank 0's decision without claiming (rank 0 holds the claim)."""
    from ..run.runner import train_cell

    log = log or (lambda msg: print(msg, file=sys.stderr))
    folder = cell_dir(opts.out, matrix_name, cell.id)
    ranks = ranks or RankDecisions(opts.out, matrix_name, [cell])
    if not ranks.rank0:
        return train_cell(cell, matrix_name, data.get(cell.config), opts, progress, log) if ranks.wait(cell.id) \
            else None
    claim = acquire(folder, log=log)
    if claim is None:
        ranks.record(cell.id, False)
        return None
    if claim is not None:
        HELD.add(claim)
    try:
        rec = record_of(folder)
        if finished(rec, fresh_after if opts.force else None):
            ranks.record(cell.id, False)
            return rec  # finished by another process between our listing and our claim
        ranks.record(cell.id, True)
        return train_cell(cell, matrix_name, data.get(cell.config), opts, progress, log)
    finally:
        if claim is not None:
            claim.release()
            HELD.discard(claim)


def run_cells(matrix_name: str, cells, opts, progress=None, fresh_after: str | None = None, log=None,
              on_record=None) -> list[dict]:
    """Every cell not finished and not claimed by a live holder, in order; returns what it trained."""
    from ..run.runner import DataCache

    data, done, ranks = DataCache(), [], RankDecisions(opts.out, matrix_name, cells)
    for cell in cells:
        if ranks.rank0:
            rec = record_of(cell_dir(opts.out, matrix_name, cell.id))
            if finished(rec, fresh_after if opts.force else None):
                ranks.record(cell.id, False)
                continue
        rec = claim_train_release(cell, matrix_name, opts, data, progress, fresh_after, log, ranks)
        if rec is not None:
            done.append(rec)
            if on_record is not None:
                on_record(rec)
            if rec.status == "interrupted":  # a signal stopped it: stop here too (the cell resumes later)
                break
    return done


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
