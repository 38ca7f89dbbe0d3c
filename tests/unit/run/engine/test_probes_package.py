"""bench/run/engine/probes as a package: one-way imports inside it (no circle), small modules, and no
facade: code imports each name from the module that defines it."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[4] / "bench" / "run" / "engine" / "probes"
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


# ---- the registry: the harness's own probes registered like plugins' -----------------------------------

def test_the_built_in_probes_are_registered_each_with_its_record_field(tiny_dm):
    from bench.run.config.presets import resolve
    from bench.run.config.probes import PROBES, record_field
    from bench.run.engine.probes.moe import MoEProbes
    from bench.run.engine.probes.outliers import OutlierProbe
    from bench.run.engine.probes.registry import build_probes
    from bench.run.engine.probes.training import Probes

    assert {n: (PROBES[n], record_field(n)) for n in ("training", "outliers", "moe")} == {
        "training": (Probes, "probes"), "outliers": (OutlierProbe, "outliers"), "moe": (MoEProbes, "moe")}
    dense = build_probes(resolve({"scale": "nano", "train.probe_every": 5}), tiny_dm)
    assert {n: type(cb) for n, cb in dense.items()} == {"training": Probes, "outliers": OutlierProbe}
    assert dense["outliers"].every == dense["training"].every == 5
    assert dense["outliers"].x.equal(dense["training"].x)  # one probe batch: both sample the same rows
    moe = build_probes(resolve({"scale": "nano-moe", "train.probe_every": 5}), tiny_dm)
    assert set(moe) == {"training", "outliers", "moe"}
    assert build_probes(resolve({"scale": "nano-moe", "train.probe_every": 0}), tiny_dm) == {}


def test_a_new_probe_is_one_registration_and_its_result_reaches_the_record(tiny_dm, tmp_path):
    """One register_probe call: the runner builds it beside the built-ins, holds it out of the clock,
    and stores its result (extra_probes[name]) while the built-ins still fill their typed fields."""
    import lightning as L

    from bench import register_probe
    from bench.run.config.matrix import Matrix, expand
    from bench.run.config.options import RunOptions
    from bench.run.engine.runner import train_cell

    class Steps(L.Callback):
        """counts optimizer steps"""

        def __init__(self):
            self.seen = 0

        @classmethod
        def from_config(cls, cfg, dm):
            return cls()

        def on_train_batch_end(self, *args):
            self.seen += 1

        def result(self):
            return {"seen": self.seen}

    register_probe("steps_seen", Steps)
    (cell,) = expand(Matrix("t", "", {"scale": "nano", "train.max_steps": 3, "train.probe_every": 2,
                                      "train.val_every": 3, "train.warmup_steps": 1}, {}, []))
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
    assert rec.status == "ok", rec.error
    assert rec.extra_probes == {"steps_seen": {"seen": 3}}
    assert rec.probes["steps"] == [0, 2] and rec.outliers["steps"] == [0, 2] and rec.moe is None


def test_a_plugin_cannot_take_a_built_in_probe_name_or_a_record_field(tmp_path, monkeypatch):
    import importlib
    import textwrap

    from bench import register_probe
    from bench.run.config.probes import register_probe as register_with_field
    from models import RegistrationError

    (tmp_path / "clash_probe.py").write_text(textwrap.dedent('''
        import lightning as L


        class Mine(L.Callback):
            """a plugin's probe"""

            @classmethod
            def from_config(cls, cfg, dm):
                return None

            def result(self):
                return {}
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    mine = importlib.import_module("clash_probe").Mine
    with pytest.raises(RegistrationError, match="'outliers' is already registered") as taken:
        register_probe("outliers", mine)
    with pytest.raises(RegistrationError, match=r"stored under extra_probes\['mine'\]") as field:
        register_with_field("mine", mine, field="outliers")
    for e in (taken, field):
        assert len(str(e.value).splitlines()) == 1
