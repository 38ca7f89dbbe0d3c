"""bench/'s imports point one way: cli > commands > launch > run.tools > run.engine > run.config > results >
(models, datamodules), with the bottom utilities (errors, atomic, console, faults, resources) below them all,
and no import circle among bench's modules. Function-level (lazy) imports count: a lazy import hides a circle,
it does not remove it; so do dynamic ones (``importlib.import_module("bench.x")``, an f-string's constant
prefix included). bench/plugins.py loads plugins while a matrix is read (it reads the probe registry of the
engine only when a probe plugin has loaded it), so it sits in the config layer; the package's own __init__
(``bench.register_probe``) is the public facade, above every layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("cli", "commands", "launch", "run.tools", "run.engine", "run.config", "results", "base")  # top first
BASE = {"errors", "atomic", "console", "faults", "resources"}
PLACED = {"bench.plugins": "run.config", "bench": "cli", "bench.run": "run.config"}  # see the module docstring


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
        elif isinstance(node, ast.Call) and (target := dynamic_target(node)):
            out.add(target)
    return out


def dynamic_target(call: ast.Call) -> str | None:
    """The bench module an ``importlib.import_module``/``__import__`` call names: a string, or an f-string's
    constant prefix up to its last dot (``f"bench.commands.{name}"`` -> ``bench.commands``)."""
    f = call.func
    name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
    if name not in ("import_module", "__import__") or not call.args:
        return None
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        text = arg.value
    elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        text = arg.values[0].value.rpartition(".")[0]
    else:
        return None
    return text if text.startswith("bench") else None


def bench_modules() -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / "bench").rglob("*.py")}


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in (``bench.run.config.schema.resolve`` -> ``bench.run.config.schema``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def layer(module: str) -> str:
    if module in PLACED:
        return PLACED[module]
    parts = module.split(".")
    if parts[1] == "run" and len(parts) > 2:
        return f"run.{parts[2]}"
    return "base" if parts[1] in BASE else parts[1]


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
    assert not upward, f"imports against the layering {' > '.join(LAYERS)}:\n" + "\n".join(upward)


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


def test_dynamic_imports_are_seen(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import importlib\n"
                 "def g(n):\n"
                 "    importlib.import_module(f'bench.commands.{n}')\n"
                 "    return importlib.import_module('bench.results.records'), __import__('os')\n")
    calls = [n for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.Call)]
    assert {dynamic_target(c) for c in calls} - {None} == {"bench.commands", "bench.results.records"}


def test_the_cli_command_table_is_seen_as_an_import_of_the_commands():
    assert "bench.commands" in graph()["bench.cli"]


def test_a_command_imports_no_other_command():
    """Commands are siblings: what two of them share lives in bench.commands.common (or lower), so a
    command can be read, changed or removed alone."""
    shared = {"bench.commands.common", "bench.commands"}
    crossing = sorted(f"{m} -> {d}" for m, deps in graph().items() if m.startswith("bench.commands.")
                      and m not in shared for d in deps if d.startswith("bench.commands.") and d not in shared)
    assert not crossing, "commands importing other commands:\n" + "\n".join(crossing)


def test_what_trains_nothing_imports_no_lightning():
    """Preparing data, checking a config's corpora, launching workers or SLURM tasks and reading a
    cells file happen in processes that train nothing: Lightning (about 4 s of import on 2 cores,
    paid by every `bench data prepare`, every launching process and every status poll) stays out."""
    import subprocess
    import sys

    light = ["datamodules", "datamodules.prepare", "bench.run.config.data_checks", "bench.launch.launcher",
             "bench.launch.workers", "bench.launch.slurm", "bench.launch.child", "bench.commands.status"]
    code = ("import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]; "
            "print(sorted(m for m in ('lightning', 'lightning.pytorch', 'lightning.fabric') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, *light], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout
