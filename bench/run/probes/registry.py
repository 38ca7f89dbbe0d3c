"""Probes that plugins register: Lightning callbacks run beside the built-in ones."""

from __future__ import annotations

import lightning as L

from models.registry import Registry


def _probe_check(name, cls) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, L.Callback)):
        return "must be a lightning.Callback subclass"
    if not callable(getattr(cls, "from_config", None)) or not callable(getattr(cls, "result", None)):
        return "needs a classmethod from_config(cfg, dm) -> instance or None, and result() -> JSON-able dict"
    return None


PROBES = Registry("probe", _probe_check)


def register_probe(name: str, cls=None, *, doc: str | None = None, override: bool = False):
    """Register a probe: a Lightning Callback class with ``from_config(cfg, dm)`` (an instance, or None
    to skip the cell) and ``result()`` (a JSON-able dict, stored in the record under
    ``extra_probes[name]``). Registered probes run beside ``Probes`` and, like it, not when
    train.probe_every is 0."""
    return PROBES.register(name, cls, doc=doc, override=override)


def registered_probes(cfg, dm) -> dict[str, L.Callback]:
    """name -> callback of every registered probe that takes part in this cell."""
    if cfg.train.probe_every <= 0:
        return {}
    built = {name: cls.from_config(cfg, dm) for name, cls in PROBES.items()}
    return {name: cb for name, cb in built.items() if cb is not None}
