"""Loading a researcher's own code (plugins) and recording what was loaded.

A plugin is a Python module that registers parts when imported (models.register_activation,
register_scheme, register_norm; bench.register_probe). Four ways load one, all before
any matrix is expanded:
- ``bench --plugin my_pkg.ext ...`` (repeatable; a module name, or a path to a .py file);
- ``plugins: [my_pkg.ext]`` in a matrix YAML (a .py path there is relative to the YAML file);
- the entry point group ``llm_arch_bench.plugins`` of an installed package, loaded at CLI start;
- the BENCH_PLUGINS environment variable (comma-separated), which ``--plugin`` also sets, so worker
  processes started by the CLI load the same plugins.
A plugin that fails to import, or registers a part badly, is one ConfigError line naming it.
Every new part is smoke-tested (built at a tiny size, one forward, its parameter count checked)
before anything trains. See docs/plugins.md.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import importlib.util
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from models import ACTIVATIONS, NORMS, SCHEMES, RegistrationError

from .errors import ConfigError

GROUP = "llm_arch_bench.plugins"
ENV = "BENCH_PLUGINS"


@dataclass(frozen=True)
class Loaded:
    module: str  # the imported module's name
    version: str | None  # of the installed distribution that provides it, if any
    how: str  # 'flag', 'matrix <path>', 'entry point <name>', 'env'
    file: str | None  # the module's file


LOADED: dict[str, Loaded] = {}


def _registered() -> dict[str, set[str]]:
    from .run.config.probes import PROBES

    return {"activation": set(ACTIVATIONS), "scheme": set(SCHEMES), "norm layer": set(NORMS), "probe": set(PROBES)}


def _version(module: str) -> str | None:
    top = module.split(".")[0]
    for dist in md.packages_distributions().get(top, []):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def _import(spec: str, base: Path | None):
    """A module by dotted name (found on sys.path or in the working directory) or by .py path."""
    path = Path(spec).expanduser()
    if spec.endswith(".py") or os.sep in spec:
        if not path.is_absolute() and base is not None and not path.exists():
            path = base / path
        if not path.is_file():
            raise ConfigError(f"plugin {spec!r}: file not found: {path}")
        name = path.stem
        if name in sys.modules:
            if getattr(sys.modules[name], "__file__", None) == str(path.resolve()):
                return sys.modules[name]
            raise ConfigError(f"plugin {spec!r}: a module named {name!r} is already imported "
                              f"({getattr(sys.modules[name], '__file__', None) or 'built in'}); rename the file")
        module_spec = importlib.util.spec_from_file_location(name, path.resolve())
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # so that pickling and dataclasses see it
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    cwd = os.getcwd()
    if cwd not in sys.path:  # as `python -m` does: a module next to the user is found
        sys.path.append(cwd)
    return importlib.import_module(spec)


def load_plugin(spec: str, how: str = "flag", base: Path | None = None) -> Loaded:
    """Import one plugin and smoke-test the parts it registered; ConfigError (one line) on any problem."""
    spec = str(spec).strip()
    if not spec:
        raise ConfigError("empty plugin name")
    before = _registered()
    try:
        module = _import(spec, base)
    except ConfigError:
        raise
    except RegistrationError as e:
        raise ConfigError(f"plugin {spec!r} registers badly: {e}") from None
    except BaseException as e:  # noqa: BLE001 - SystemExit from a plugin must not end the CLI silently
        if isinstance(e, KeyboardInterrupt):
            raise
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"plugin {spec!r} failed to import: {type(e).__name__}" + (f": {text}" if text else "")) \
            from None
    name = module.__name__
    if name in LOADED:
        return LOADED[name]
    new = {kind: sorted(names - before[kind]) for kind, names in _registered().items()}
    for kind, names in new.items():
        for part in names:
            problem = smoke_test(kind, part)
            if problem:
                raise ConfigError(f"plugin {spec!r} registers {kind} {part!r} badly: {problem}")
    loaded = Loaded(name, _version(name), how, getattr(module, "__file__", None))
    LOADED[name] = loaded
    return loaded


def load_plugins(specs, how: str = "flag", base: Path | None = None) -> list[Loaded]:
    return [load_plugin(s, how, base) for s in specs or []]


def load_entry_points() -> list[Loaded]:
    """Every installed package's ``llm_arch_bench.plugins`` entry point (its value names the module)."""
    out = []
    for ep in md.entry_points(group=GROUP):
        out.append(load_plugin(ep.value.split(":")[0], f"entry point {ep.name}"))
    return out


def load_env() -> list[Loaded]:
    specs = [s for s in os.environ.get(ENV, "").split(",") if s.strip()]
    return load_plugins(specs, "env")


def export_env(specs) -> None:
    """Let processes this one starts (workers) load the same --plugin modules."""
    old = [s for s in os.environ.get(ENV, "").split(",") if s.strip()]
    os.environ[ENV] = ",".join(dict.fromkeys(old + [str(Path(s).resolve()) if s.endswith(".py") else s
                                                    for s in specs]))


# ---- smoke tests: a contract broken is found before anything trains ------------------------------

def smoke_test(kind: str, name: str) -> str | None:
    """Build the part into a tiny model, run a forward and backward, and check count_params against
    the built model; None if fine, else the problem as one line."""
    import torch

    from models import Transformer, TransformerConfig, count_params

    if kind == "probe":
        return None  # the registry checked its contract; it runs only inside a training run
    field = {"activation": "activation", "scheme": "scheme", "norm layer": "norm_layer"}[kind]
    try:
        cfg = TransformerConfig(vocab_size=32, block_size=8, d_model=16, n_layers=4, n_heads=2,
                                ref_intermediate_size=24, **{field: name})
        torch.manual_seed(0)
        model = Transformer(cfg)
        x = torch.randint(0, 32, (2, 8))
        logits = model(x)
        if logits.shape != (2, 8, 32):
            return f"the model's output has shape {tuple(logits.shape)}, expected (2, 8, 32)"
        logits.float().square().mean().backward()
        if not torch.isfinite(logits).all():
            return "the output of a tiny model at init is not finite"
        built, counted = sum(p.numel() for p in model.parameters()), count_params(cfg).total
        if built != counted:
            return (f"count_params gives {counted:,} parameters but the model has {built:,}: keep the FFN's "
                    "linears in FFN, norms in Block.norms (see docs/plugins.md)")
    except Exception as e:  # noqa: BLE001 - any failure is the plugin's, reported as one line
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return f"a tiny model with it fails: {type(e).__name__}" + (f": {text}" if text else "")
    return None


# ---- provenance ---------------------------------------------------------------------------------

def provenance(cfg) -> dict:
    """What a record keeps about plugins: the modules loaded (name, version, how), the plugin parts the
    cell's model uses (name, source, sha256; their fingerprints are in the config hash) and the
    registered probes that ran."""
    from models import plugin_parts

    out = {"loaded": [asdict(v) for v in LOADED.values()], "parts": plugin_parts(cfg.model)}
    from .run.config.probes import PROBES

    if PROBES.plugin_names():
        out["probes"] = {n: {"source": PROBES.part(n).source, "sha256": PROBES.part(n).sha256}
                         for n in PROBES.plugin_names()}
    return out
