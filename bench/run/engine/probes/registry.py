"""The registered probes of one cell, built as Lightning callbacks run beside the built-in ones."""

from __future__ import annotations

import lightning as L

from ...config.probes import PROBES


def registered_probes(cfg, dm) -> dict[str, L.Callback]:
    """name -> callback of every registered probe that takes part in this cell."""
    if cfg.train.probe_every <= 0:
        return {}
    built = {name: cls.from_config(cfg, dm) for name, cls in PROBES.items()}
    return {name: cb for name, cb in built.items() if cb is not None}
