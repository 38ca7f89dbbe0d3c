"""The probe registry: name -> Lightning callback class, filled by the built-in probes' and plugins'
``register_probe``. A registry, like models' registries of activations and schemes: which probes a run can
have; the engine builds them per cell (bench.run.engine.probes.registry)."""

from __future__ import annotations

from models.registry import Registry


def _probe_check(name, cls) -> str | None:
    import lightning as L  # only when a probe registers: a matrix without probes never imports Lightning here

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
