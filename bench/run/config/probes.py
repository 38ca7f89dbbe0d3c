"""The probe registry: name -> Lightning callback class, filled by ``register_probe``: the harness's own
probes (bench/run/engine/probes/: training, outliers, moe) and plugins' alike. A registry, like models'
registries of activations and schemes: which probes a run can have; the engine builds every one of them
per cell (bench.run.engine.probes.registry) and stores each result in the record field it names."""

from __future__ import annotations

import dataclasses

from models.registry import Registry, RegistrationError, is_builtin


def _probe_check(name, cls) -> str | None:
    import lightning as L  # only when a probe registers: a matrix without probes never imports Lightning here

    if not (isinstance(cls, type) and issubclass(cls, L.Callback)):
        return "must be a lightning.Callback subclass"
    if not callable(getattr(cls, "from_config", None)) or not callable(getattr(cls, "result", None)):
        return "needs a classmethod from_config(cfg, dm) -> instance or None, and result() -> JSON-able dict"
    return None


PROBES = Registry("probe", _probe_check)
RECORD_FIELDS: dict[str, str] = {}  # a built-in probe's name -> the typed Record field its result fills


def register_probe(name: str, cls=None, *, doc: str | None = None, override: bool = False,
                   field: str | None = None):
    """Register a probe: a Lightning Callback class with ``from_config(cfg, dm)`` (an instance, or None
    to skip the cell) and ``result()`` (a JSON-able dict, stored in the record under
    ``extra_probes[name]``). Registered probes run beside the built-in ones, held out of the train
    clock, and not when train.probe_every is 0. ``field``: for the harness's own probes
    only, the typed Record field their result fills instead (``probes``, ``outliers``, ``moe``)."""
    def add(obj):
        if field is not None:
            from ...results.records import Record

            if not is_builtin(obj):
                raise RegistrationError(f"probe {name!r}: a record field is for the harness's own probes; a "
                                        f"plugin's result is stored under extra_probes[{name!r}] (drop field=)")
            if field not in {f.name for f in dataclasses.fields(Record)}:
                raise RegistrationError(f"probe {name!r}: Record has no field {field!r}")
        PROBES.register(name, obj, doc=doc, override=override)
        if field is None:
            RECORD_FIELDS.pop(name, None)
        else:
            RECORD_FIELDS[name] = field
        return obj

    return add if cls is None else add(cls)


def record_field(name: str) -> str | None:
    """The typed Record field a probe's result fills; None: ``extra_probes[name]``."""
    return RECORD_FIELDS.get(name)
