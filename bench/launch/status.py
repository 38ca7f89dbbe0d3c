"""`bench status MATRIX`: where every cell of a matrix stands, from the results tree (records,
claims) and, for cells submitted with `bench submit`, the scheduler (squeue; sacct when the cluster
keeps accounting).

States: done (ok/diverged record), failed (failed/oom record), running (a live claim, or a
running SLURM task), queued (a pending SLURM task), interrupted (a record left 'running' or
'interrupted' with no live holder: resumable), stale claim (its holder is dead: taken over by the
next run), not started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

from rich.table import Table

from ..results.records import cell_dir
from ..run.claims import holder
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
        if rec in ("ok", "diverged"):
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


def cmd_status(args) -> int:
    from ..cli import cells_from, console

    matrix, cells = cells_from(args)
    rows = cell_states(Path(args.out), matrix.name, cells)
    if args.json:
        print(json.dumps({"matrix": matrix.name, "cells": rows}, indent=2))
        return 0
    counts = Counter(r["state"] for r in rows)
    t = Table(title=f"{matrix.name}: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()), title_justify="left")
    for col in ("cell", "state", "record", "SLURM job", "SLURM state", "holder"):
        t.add_column(col)
    colour = {"done": "green", "failed": "red", "running": "cyan", "queued": "yellow"}
    for r in rows:
        c = colour.get(r["state"], "magenta")
        t.add_row(r["id"], f"[{c}]{r['state']}[/]", r["record"] or "-", r["slurm_job"] or "-", r["slurm_state"] or "-",
                  r["holder"] or "-")
    console.print(t)
    return 0


def add_status_parser(sub, add_filters, add_overrides) -> None:
    p = sub.add_parser("status", help="queued / running / done / failed cells of a matrix (records, claims, SLURM)")
    add_filters(p)
    p.add_argument("--out", default="results", help="results folder")
    p.add_argument("--json", action="store_true", help='print {"cells": [{"id", "state", "slurm_job", ...}]}')
    add_overrides(p)  # the same overrides as the run: they are part of each cell's id
    p.set_defaults(func=cmd_status)
