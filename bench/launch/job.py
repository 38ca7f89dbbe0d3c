"""The one unit of work every launcher runs: claim a cell, train it, record it, release it.

`bench run --workers N` children and SLURM array tasks call ``run_cells`` on their share of the
matrix; a claim (claims.py) on the cell's results folder makes two of them never train the same
cell, and a cell finished meanwhile by someone else is not trained again.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

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


class RankDecisions:
    """Rank 0 decides (by claim) which cells to train; the other ranks of a multi-device cell, which
    Lightning starts by re-running the command, must make the same decisions or a fit would wait for
    a rank that skipped it. Rank 0 writes each decision to OUT/<matrix>/.ranks/<its pid>.json
    before the cell's fit; the children (which inherit BENCH_RANK0_PID) read it. Ranks started by
    srun (a multi-GPU SLURM task) share OUT/<matrix>/.ranks/slurm-<job id>.json instead."""

    def __init__(self, out, matrix_name: str):
        self.rank0 = is_rank_zero()
        if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:  # ranks started by srun: one job, one key
            key, self.pid = f"slurm-{os.environ.get('SLURM_JOB_ID', '0')}", None
        else:
            self.pid = os.getpid() if self.rank0 else int(os.environ.get("BENCH_RANK0_PID", "0"))
            key = str(self.pid)
            if self.rank0:
                os.environ["BENCH_RANK0_PID"] = key  # inherited by the ranks Lightning starts
        self.path = Path(out) / matrix_name / ".ranks" / f"{key}.json"
        self.decisions: dict[str, bool] = {}

    def record(self, cell_id: str, train: bool) -> None:
        self.decisions[cell_id] = train
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.decisions))
        os.replace(tmp, self.path)

    def wait(self, cell_id: str) -> bool:
        while True:
            try:
                got = json.loads(self.path.read_text())
                if cell_id in got:
                    return bool(got[cell_id])
            except (OSError, ValueError):
                pass
            try:
                if self.pid:
                    os.kill(self.pid, 0)
            except ProcessLookupError:
                raise SystemExit(f"rank 0 (pid {self.pid}) is gone") from None
            time.sleep(0.2)


def claim_train_release(cell, matrix_name: str, opts, data, progress=None, fresh_after: str | None = None,
                        log=None, ranks: RankDecisions | None = None) -> dict | None:
    """Train ``cell`` under its claim; None when another live process holds it. Other ranks of a
    multi-device cell follow rank 0's decision without claiming (rank 0 holds the claim)."""
    from ..run.runner import train_cell

    log = log or (lambda msg: print(msg, file=sys.stderr))
    folder = cell_dir(opts.out, matrix_name, cell.id)
    ranks = ranks or RankDecisions(opts.out, matrix_name)
    if not ranks.rank0:
        return train_cell(cell, matrix_name, data.get(cell.config), opts, progress) if ranks.wait(cell.id) else None
    claim = acquire(folder, log=log)
    if claim is None:
        ranks.record(cell.id, False)
        return None
    if claim is not None:
        HELD.add(claim)
    try:
        rec = read_record(folder / "record.json")
        if finished(rec, fresh_after if opts.force else None):
            ranks.record(cell.id, False)
            return rec  # finished by another process between our listing and our claim
        ranks.record(cell.id, True)
        return train_cell(cell, matrix_name, data.get(cell.config), opts, progress)
    finally:
        if claim is not None:
            claim.release()
            HELD.discard(claim)


def run_cells(matrix_name: str, cells, opts, progress=None, fresh_after: str | None = None, log=None,
              on_record=None) -> list[dict]:
    """Every cell not finished and not claimed by a live holder, in order; returns what it trained."""
    from ..run.runner import DataCache

    data, done, ranks = DataCache(), [], RankDecisions(opts.out, matrix_name)
    for cell in cells:
        if ranks.rank0:
            rec = read_record(cell_dir(opts.out, matrix_name, cell.id) / "record.json")
            if finished(rec, fresh_after if opts.force else None):
                ranks.record(cell.id, False)
                continue
        rec = claim_train_release(cell, matrix_name, opts, data, progress, fresh_after, log, ranks)
        if rec is not None:
            done.append(rec)
            if on_record is not None:
                on_record(rec)
    return done


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
