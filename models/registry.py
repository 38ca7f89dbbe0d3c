"""The registries: name -> class for activations, schemes and norm layers, and the register_* API.

Every module of ``models`` imports this one and nothing here imports back, so there is no import
circle: activations.py, norms.py and schemes.py fill the registries with the built-in parts, and
a researcher's own code adds parts the same way, without forking the harness:

    from models import register_activation

    @register_activation("relu2_glu")
    class ReLU2GLU(nn.Module):
        '''relu(g)^2 * u'''            # first docstring line: what `bench list` shows
        gated = True
        def forward(self, g, u): ...

A taken name is refused unless ``override=True``. A part whose class is defined outside the
harness's packages is a *plugin part*: its fingerprint (sha256 of its module's source, read when
it is registered) goes into the config hash of every cell that uses it (docs/plugins.md).
"""

from __future__ import annotations

import hashlib
import inspect
import re
from dataclasses import dataclass

from torch import nn

BUILTIN_PACKAGES = ("models", "bench")  # parts defined here are built-in: they add nothing to a config hash
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # '+', '/', ':', ',' and spaces mean something in names


class RegistrationError(ValueError):
    """A part that cannot be registered: the message is one line naming the part and the fix."""


@dataclass(frozen=True)
class Part:
    """What is known about one registered object."""

    name: str
    obj: object
    doc: str
    builtin: bool
    source: str  # 'module.QualName'
    sha256: str | None  # of the defining module's source; None for built-in parts


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def fingerprint(obj) -> str:
    """sha256 of the source of the module that defines ``obj`` (so a helper it calls is covered too),
    or of the object's own source when the module's cannot be read."""
    module = inspect.getmodule(obj)
    for target in (module, obj):
        try:
            text = inspect.getsource(target)
        except (OSError, TypeError):
            continue
        return hashlib.sha256(text.encode()).hexdigest()
    raise RegistrationError(f"cannot read the source of {_qualname(obj)}: define a registered part in a .py file "
                            "(its source fingerprint goes into the config hash)")


def describe(obj) -> str:
    """First line of the docstring: the one-line description in `bench list`."""
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return lines[0] if lines else ""


def is_builtin(obj) -> bool:
    return str(getattr(obj, "__module__", "")).split(".")[0] in BUILTIN_PACKAGES


class Registry(dict):
    """name -> class (a plain dict to every reader), plus ``register`` and per-name ``part`` facts.

    ``check(name, obj)`` returns an error text for an object that breaks the kind's contract."""

    def __init__(self, kind: str, check=None):
        super().__init__()
        self.kind, self.check = kind, check
        self.docs: dict[str, str] = {}
        self._parts: dict[str, Part] = {}

    def register(self, name: str, obj=None, *, doc: str | None = None, override: bool = False):
        """Register ``obj`` under ``name``; without ``obj``, a decorator. Returns ``obj``."""
        if obj is None:
            return lambda o: self.register(name, o, doc=doc, override=override)
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise RegistrationError(f"bad {self.kind} name {name!r}: use letters, digits, '_', '.', '-' "
                                    "(no '+', '/', ':', ',' or spaces)")
        problem = self.check(name, obj) if self.check else None
        if problem:
            raise RegistrationError(f"{self.kind} {name!r} ({_qualname(obj)}): {problem}")
        builtin = is_builtin(obj)
        part = Part(name, obj, doc if doc is not None else describe(obj), builtin, _qualname(obj),
                    None if builtin else fingerprint(obj))
        old = self._parts.get(name) or (self.part(name) if name in self else None)
        if old is not None and not override:
            if getattr(old.obj, "__qualname__", None) == getattr(obj, "__qualname__", 0) and old.sha256 == part.sha256:
                return obj  # the same code imported twice (e.g. by file path and by module name)
            raise RegistrationError(f"{self.kind} {name!r} is already registered ({old.source}); choose another "
                                    f"name or pass override=True to replace it")
        self[name] = obj
        self.docs[name] = part.doc
        self._parts[name] = part
        return obj

    def part(self, name: str) -> Part:
        """The facts of a registered name; an entry set directly (``REGISTRY[name] = cls``) is read
        from its object now."""
        obj = self[name]
        p = self._parts.get(name)
        if p is None or p.obj is not obj:
            builtin = is_builtin(obj)
            p = Part(name, obj, self.docs.get(name) or describe(obj), builtin, _qualname(obj),
                     None if builtin else fingerprint(obj))
            self._parts[name] = p
        return p

    def plugin_names(self) -> list[str]:
        return [n for n in self if not self.part(n).builtin]


def _module_class(name, obj) -> str | None:
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        return "must be a torch.nn.Module subclass"
    return None


def _activation(name, obj) -> str | None:
    problem = _module_class(name, obj)
    if problem is None and not isinstance(getattr(obj, "gated", None), bool):
        problem = ("needs a class attribute gated = True (forward(g, u), three matrices) or False "
                   "(forward(x), two matrices)")
    return problem


def _scheme(name, obj) -> str | None:
    if isinstance(obj, type):
        return _module_class(name, obj)
    return None if callable(obj) else "must be a Block subclass or a function (cfg, layer) -> Block"


ACTIVATIONS = Registry("activation", _activation)
NORMS = Registry("norm layer", _module_class)
SCHEMES = Registry("scheme", _scheme)
SCHEME_DOCS = SCHEMES.docs
GPAS_EXTENSIONS: set[str] = set()  # schemes whose +gpas form is not from the GPAS paper


def register_activation(name: str, cls=None, *, doc: str | None = None, override: bool = False):
    """Register an FFN activation: an nn.Module class with ``gated`` (bool); built with no arguments."""
    return ACTIVATIONS.register(name, cls, doc=doc, override=override)


def register_norm(name: str, cls=None, *, doc: str | None = None, override: bool = False):
    """Register a normalization layer: an nn.Module class built as ``cls(dim, eps)``."""
    return NORMS.register(name, cls, doc=doc, override=override)


def register_scheme(name: str, cls=None, *, doc: str | None = None, gpas_extension: bool = False,
                    override: bool = False):
    """Register a residual/norm scheme: a Block subclass (or a function (cfg, layer) -> Block).
    ``gpas_extension``: its +gpas form is not from the GPAS paper (noted in results)."""
    def add(obj):
        SCHEMES.register(name, obj, doc=doc, override=override)
        (GPAS_EXTENSIONS.add if gpas_extension else GPAS_EXTENSIONS.discard)(name)
        return obj

    return add if cls is None else add(cls)


def plugin_parts(cfg) -> dict[str, dict]:
    """The plugin parts a model config uses: kind -> {name, source, sha256}; {} for built-in parts only."""
    out = {}
    for kind, registry, name in (("activation", ACTIVATIONS, cfg.activation), ("scheme", SCHEMES, cfg.scheme),
                                 ("norm_layer", NORMS, cfg.norm_layer)):
        if name in registry and not (p := registry.part(name)).builtin:
            out[kind] = {"name": name, "source": p.source, "sha256": p.sha256}
    return out
