"""Every registered probe of one cell, built as Lightning callbacks: the harness's own (imported here,
so that they are registered wherever probes are built or listed) and plugins'."""

from __future__ import annotations

import lightning as L

from ...config.probes import PROBES
from . import training, outliers, moe  # noqa: F401 - importing them registers the built-in probes (in this order)


def build_probes(cfg, dm) -> dict[str, L.Callback]:
    """name -> callback of every registered probe that takes part in this cell: none when
    train.probe_every is 0, else each one whose from_config gives a callback (the MoE probe skips a
    dense model)."""
    if cfg.train.probe_every <= 0:
        return {}
    built = {name: cls.from_config(cfg, dm) for name, cls in PROBES.items()}
    return {name: cb for name, cb in built.items() if cb is not None}
