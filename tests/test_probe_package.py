"""bench/run/probes as a package: one-way imports inside it (no circle), small modules, and the names
other code imports from ``bench.run.probes``."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bench" / "run" / "probes"
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
            elif node.module and node.module.startswith("bench.run.probes."):
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
        importlib.import_module(f"bench.run.probes.{name}")


def test_the_names_code_and_plugins_import():
    import bench.run.probes as probes

    for name in ("Probes", "MoEProbes", "OutlierProbe", "PROBES", "register_probe", "registered_probes",
                 "PooledMoments", "STATS", "SITES", "outlier_stats", "site_stats", "probe_forward", "kurtosis",
                 "effective_rank", "find_spikes", "first_loader", "layer_cosine", "skipped", "token_loss",
                 "whole_norms", "base_model", "evaluating", "hidden_hooks"):
        assert hasattr(probes, name), name
    from bench import register_probe  # the plugin entry point still reaches the registry

    assert register_probe is not None
