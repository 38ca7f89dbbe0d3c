"""bench/run/engine/probes as a package: one-way imports inside it (no circle), small modules, and no
facade: code imports each name from the module that defines it."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bench" / "run" / "engine" / "probes"
# the documented order: a module may import only modules before it
ORDER = ("measures", "forward", "analyses", "training", "moe", "outliers", "registry")


def sibling_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (relative ``from .x import`` or absolute)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                out.add(node.module.split(".")[0])
            elif node.level == 1:
                out.update(a.name for a in node.names)
            elif node.module and node.module.startswith("bench.run.engine.probes."):
                out.add(node.module.split(".")[3])
    return out


def test_every_module_is_listed_and_imports_only_earlier_ones():
    modules = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(ORDER)
    for name in ORDER:
        earlier = set(ORDER[:ORDER.index(name)])
        assert sibling_imports(PACKAGE / f"{name}.py") <= earlier, name


def test_no_circle_and_no_old_modules():
    graph = {name: sibling_imports(PACKAGE / f"{name}.py") for name in ORDER}

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, seen + (n,))) for n in graph.get(start, ()))

    assert not [n for n in graph if reaches(n, n)]
    run = PACKAGE.parent
    assert (not (run / "probes.py").exists() and not (run / "moe_probes.py").exists()
            and not (run / "outliers.py").exists())


def test_modules_are_small():
    sizes = {p.name: len(p.read_text().splitlines()) for p in PACKAGE.glob("*.py")}
    assert max(sizes.values()) <= 400, sizes


def test_each_module_imports_on_its_own():
    for name in ORDER:  # a fresh import of one module must not need another to be imported first
        importlib.import_module(f"bench.run.engine.probes.{name}")


def test_the_package_is_no_facade_and_plugins_reach_the_registry():
    import bench.run.engine.probes as probes
    from bench import register_probe
    from bench.run.config.probes import PROBES

    names = [n for n, v in vars(probes).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)]
    assert not names, f"names live in their modules, not the package: {names}"
    assert register_probe is not None and PROBES is not None
