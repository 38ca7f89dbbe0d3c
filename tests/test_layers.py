"""bench/'s imports point one way: cli > commands > launch > run > results > (models, datamodules), with the
bottom utilities (errors, atomic, console, faults) below them all, and no import circle among bench's
modules. Function-level (lazy) imports count: a lazy import hides a circle, it does not remove it.
bench/plugins.py loads plugins for the run layer (it reads the probe registry there), so it sits in it;
the package's own __init__ (``bench.register_probe``) is the public facade, above every layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("cli", "commands", "launch", "run", "results", "base")  # top first
BASE = {"errors", "atomic", "console", "faults", "resources"}
PLACED = {"bench.plugins": "run", "bench": "cli"}  # see the module docstring


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] or parts
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every bench module ``path`` imports (absolute and relative, at any depth of the file)."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names]
            out |= {n for n in names + [target] if n.startswith("bench")}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("bench")}
    return out


def bench_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / "bench").rglob("*.py")}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in (``bench.run.config.resolve`` -> ``bench.run.config``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def layer(module: str) -> str:
    if module in PLACED:
        return PLACED[module]
    part = module.split(".")[1]
    return "base" if part in BASE else part


def graph() -> dict[str, set[str]]:
    modules = bench_modules()
    return {m: {d for d in (resolve(n, modules) for n in imports_of(p)) if d and d != m and d != "bench"}
            for m, p in modules.items()}


def test_every_bench_module_sits_in_a_known_layer():
    unknown = sorted(m for m in bench_modules() if layer(m) not in LAYERS)
    assert not unknown, f"modules outside {', '.join(LAYERS)}: {unknown}"


def test_imports_point_down_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    upward = sorted(f"{m} -> {d}" for m, deps in graph().items() for d in deps
                    if rank.get(layer(d), 99) < rank.get(layer(m), 99))
    assert not upward, "imports against the layering cli > commands > launch > run > results > base:\n" + \
        "\n".join(upward)


def test_nothing_imports_the_cli():
    users = sorted(m for m, deps in graph().items() if "bench.cli" in deps)
    assert not users, f"bench.cli is the entry point only; imported by {users}"


def test_no_import_circle_in_bench():
    g, state = graph(), {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import circle: {' -> '.join(trail + [node])}"
        state[node] = "open"
        for dep in sorted(g.get(node, ())):
            # a package's __init__ re-exporting its own modules is not a circle
            if not (dep.startswith(node + ".") and (ROOT / Path(*node.split("."))).is_dir()):
                visit(dep, trail + [node])
        state[node] = "done"

    for node in sorted(g):
        visit(node, [])
