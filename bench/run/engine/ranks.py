"""Which process of a multi-process (DDP/FSDP) cell this is, before any Trainer exists.

Lightning's subprocess launcher re-runs the whole `bench` command once per extra device, with
LOCAL_RANK (and NODE_RANK, WORLD_SIZE) set; torchrun sets RANK; srun sets SLURM_PROCID. Every rank
must train the same cells in the same order (they meet in each fit), but only global rank 0 may
write records, leaderboards, claims, status files, or print.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ...atomic import atomic_write

def is_rank_zero() -> bool:
    """Global rank 0: no rank variable names another rank (srun's SLURM_PROCID counts only when it
    launched several tasks; an array task is always its own rank 0)."""
    keys = ["RANK", "LOCAL_RANK", "NODE_RANK"]
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        keys.append("SLURM_PROCID")
    return all(int(os.environ.get(k) or 0) == 0 for k in keys)


class RankDecisions:
    """Rank 0 decides (by claim) which cells to train; the other ranks of a multi-device cell, which
    Lightning starts by re-running the command, must make the same decisions or a fit would wait for
    a rank that skipped it. Rank 0 writes each decision to OUT/<matrix>/.ranks/<its pid>.json
    before the cell's fit; the children (which inherit BENCH_RANK0_PID) read it. Ranks started by
    srun (a multi-GPU SLURM task) share OUT/<matrix>/.ranks/slurm-<job id>.json instead."""

    def __init__(self, out, matrix_name: str, cells=()):
        self.rank0 = is_rank_zero()
        # only matrices with a multi-process cell need the file (str(devices) "1" is one device)
        self.needed = any(str(c.config.train.devices) != "1" or c.config.train.num_nodes > 1 for c in cells)
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
        if not self.needed:
            return
        self.decisions[cell_id] = train
        atomic_write(self.path, json.dumps(self.decisions))

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
