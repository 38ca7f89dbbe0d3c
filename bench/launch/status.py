"""`bench status MATRIX`: where every cell of a matrix stands, from the results tree (records,
claims) and, for cells submitted with `--slurm`, the scheduler (squeue; sacct when the cluster
keeps accounting).

States: done (a usable ok/diverged record), failed (failed/oom record), running (a live claim, or a
running SLURM task), queued (a pending SLURM task), interrupted (a record left 'running' or
'interrupted' with no live holder: resumable), stale claim (its holder is dead: taken over by the
next run), not started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from ..atomic import remove_old_temps
from ..results.records import DONE, cell_dir
from ..run.engine.folder import record_of, tidy
from ..run.engine.claims import check_stale_after, holder
from .slurm import load_jobs


def scheduler_states(job_ids: list[str]) -> dict[str, str]:
    """SLURM job id -> state (PENDING, RUNNING, COMPLETED, FAILED, ...); empty without SLURM."""
    states: dict[str, str] = {}
    if not job_ids or shutil.which("squeue") is None:
        return states
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T", "-j", ",".join(arrays)], capture_output=True,
                             text=True, timeout=30).stdout
        states.update(dict(line.split()[:2] for line in out.splitlines() if len(line.split()) >= 2))
    except (OSError, subprocess.SubprocessError):
        pass
    missing = [j for j in job_ids if j not in states]
    if missing and shutil.which("sacct"):
        try:
            r = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(arrays)],
                               capture_output=True, text=True, timeout=30)
            for line in r.stdout.splitlines():
                jid, _, state = line.partition("|")
                if jid in missing and state:
                    states[jid] = state.split()[0]
        except (OSError, subprocess.SubprocessError):
            pass
    return states


def raw_status(folder: Path) -> str | None:
    try:
        return str(json.loads((folder / "record.json").read_text()).get("status"))
    except (OSError, ValueError, AttributeError):
        return None


def cell_states(out: Path, matrix_name: str, cells) -> list[dict]:
    jobs = load_jobs(out, matrix_name)
    sched = scheduler_states([jobs[c.id] for c in cells if c.id in jobs])
    rows = []
    for c in cells:
        folder = cell_dir(out, matrix_name, c.id)
        rec, claim = raw_status(folder), holder(folder)
        job_id = jobs.get(c.id)
        slurm = sched.get(job_id, "") if job_id else ""
        if rec in DONE and record_of(folder) is not None:  # a record that cannot be used is trained again
            state = "done"
        elif claim is not None and not claim.is_stale():
            state = "running"
        elif slurm in ("RUNNING", "COMPLETING", "CONFIGURING"):
            state = "running"
        elif slurm in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"):
            state = "queued"
        elif rec in ("failed", "oom"):
            state = "failed"
        elif claim is not None:
            state = "stale claim"
        elif rec is not None:
            state = "interrupted"
        else:
            state = "not started"
        rows.append({"id": c.id, "state": state, "record": rec, "slurm_job": job_id, "slurm_state": slurm or None,
                     "holder": claim.describe() if claim is not None else None})
    return rows


def clean(out: Path, matrix_name: str, cells, stale_after: float, keep_checkpoints: bool) -> list[str]:
    """`bench status --clean`: what killed runs left, removed; one line per thing removed."""
    from .workers import prune_launches

    check_stale_after(stale_after)
    lines = []
    for c in cells:
        folder = cell_dir(out, matrix_name, c.id)
        cleaned = tidy(folder, stale_after, keep_checkpoints, done=getattr(record_of(folder), "status", None) in DONE)
        if cleaned:
            lines.append(f"{c.id}: removed {cleaned}")
    matrix_folder = Path(out) / matrix_name
    temps = remove_old_temps(matrix_folder) if matrix_folder.is_dir() else []
    if temps:
        lines.append(f"{matrix_name}: removed {len(temps)} temp file(s) left by killed writers")
    pruned = prune_launches(matrix_folder / ".workers")
    if pruned:
        lines.append(f"{matrix_name}: removed {len(pruned)} --workers launch folder(s) untouched for a week")
    return lines
