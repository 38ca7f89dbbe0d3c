"""Which process of a multi-process (DDP/FSDP) cell this is, before any Trainer exists.

Lightning's subprocess launcher re-runs the whole `bench` command once per extra device, with
LOCAL_RANK (and NODE_RANK, WORLD_SIZE) set; torchrun sets RANK; srun sets SLURM_PROCID. Every rank
must train the same cells in the same order (they meet in each fit), but only global rank 0 may
write records, leaderboards, claims, status files, or print.
"""

from __future__ import annotations

import os

def is_rank_zero() -> bool:
    """Global rank 0: no rank variable names another rank (srun's SLURM_PROCID counts only when it
    launched several tasks; an array task is always its own rank 0)."""
    keys = ["RANK", "LOCAL_RANK", "NODE_RANK"]
    if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1:
        keys.append("SLURM_PROCID")
    return all(int(os.environ.get(k) or 0) == 0 for k in keys)
