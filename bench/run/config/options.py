"""How a run writes its results, as opposed to what it measures (the cell's config): where, with which
loggers, how often it checkpoints, how it treats cells another run holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

STALE_AFTER = 300.0  # seconds without a heartbeat before a holder that cannot be checked is taken over


@dataclass(frozen=True)
class RunOptions:
    """Non-semantic settings: they change where and how results are written, not what is measured.
    Frozen: a caller that needs another value derives new options (dataclasses.replace)."""

    out: Path = Path("results")
    force: bool = False
    loggers: tuple[str, ...] = ("csv",)
    quiet: bool = False
    ckpt_every: int = 100  # optimizer steps between resumable checkpoints (0 = none)
    keep_checkpoints: bool = False
    wait: bool = False  # wait for cells another run is training instead of skipping them
    stale_after: float = STALE_AFTER  # seconds without a heartbeat before another host's claim is taken over
    save_weights: bool = False  # keep every finished cell's weights (safetensors) under <cell>/weights
    progress_every: float | None = None  # seconds between progress lines when stderr is not a terminal (None: none)
    axis_order: dict = field(default_factory=dict)  # {axis: values in matrix order}, recorded with each cell
    command: tuple[str, ...] = ()  # the launching command line each record keeps (empty: this process's argv)
