"""Plugins: a researcher's own parts registered without forking (models/registry.py, bench/plugins.py).

The example plugin (examples/plugin/my_ext.py: relu2_glu, rezero_pre, the rezero_alpha probe) is
loaded each way: --plugin, a matrix's plugins:, an entry point of a package found on sys.path, and
behaves as a built-in part does (plan sizes, list, check, run, leaderboard). Registrations made here
are undone after each test, so the other test files see the built-in registries only.
"""

from __future__ import annotations

import ast
import re
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import bench.plugins as plugins
from bench.run.config.matrix import expand, load_matrix
from models import (ACTIVATIONS, RegistrationError, Transformer, TransformerConfig,
                    count_params, register_activation)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin"
MY_EXT = str(EXAMPLE / "my_ext.py")
MICRO_H = 344  # micro scale's SwiGLU h: a gated activation gets it, a pointwise one 3/2 of it


def flat(text: str) -> str:
    return " ".join(text.split())


def write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(textwrap.dedent(text))
    return p


def plan(bench_cli, *argv) -> list[dict]:
    code, out, err = bench_cli(*argv, "--json")
    assert code == 0, err
    return json.loads(out)["cells"]


# ---- the registration API ------------------------------------------------------------------------


def test_taken_name_is_refused_in_one_line_unless_override():
    class Mine(torch.nn.Module):
        """mine"""
        gated = True

        def forward(self, g, u):
            return g * u

    with pytest.raises(RegistrationError) as e:
        register_activation("swiglu", Mine)
    msg = str(e.value)
    assert "\n" not in msg and "'swiglu' is already registered (models.activations.SwiGLU)" in msg
    assert "override=True" in msg
    assert register_activation("swiglu", Mine, override=True) is Mine
    assert ACTIVATIONS["swiglu"] is Mine and not ACTIVATIONS.part("swiglu").builtin
    # an overridden built-in name is a plugin part: its cells get a new id
    assert TransformerConfig(activation="swiglu").activation == "swiglu"


@pytest.mark.parametrize("name,obj,expected", [
    ("a+b", torch.nn.ReLU, "bad activation name 'a+b'"),
    ("no_flag", torch.nn.ReLU, "needs a class attribute gated"),
    ("not_module", lambda x: x, "must be a torch.nn.Module subclass"),
])
def test_bad_registrations(name, obj, expected):
    with pytest.raises(RegistrationError, match=re.escape(expected)):
        register_activation(name, obj)
    assert name not in ACTIVATIONS


def test_registered_parts_build_and_count_like_builtins():
    plugins.load_plugin(MY_EXT)
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=3, n_heads=4, ref_intermediate_size=88,
                            activation="relu2_glu", scheme="rezero_pre", gpas=True)
    model = Transformer(cfg)
    c = count_params(cfg)
    assert c.intermediate_size == 88  # gated: three matrices, h = h_ref
    d, L, V, h = 32, 3, 64, 88  # per layer: attention, gated FFN, 2 RMSNorm gains, 1 GPAS gate, 2 alphas
    assert c.total == sum(p.numel() for p in model.parameters()) == 2 * V * d + L * (
        4 * d * d + 3 * d * h + 2 * d + 1 + 2) + d
    blocks = model.blocks
    assert all(torch.equal(b.rezero_alpha, torch.zeros(2)) for b in blocks)  # ReZero init, after init_weights
    x = torch.randint(0, 64, (2, 8))
    # alpha = 0: every block is the identity, so the logits are those of embedding -> norm -> head
    torch.testing.assert_close(model(x), model.lm_head(model.norm(model.embed(x))))
    act = ACTIVATIONS["relu2_glu"]()
    g, u = torch.randn(5, 7), torch.randn(5, 7)
    torch.testing.assert_close(act(g, u), torch.relu(g) ** 2 * u)


class ScaleNorm(torch.nn.Module):
    """g * x / ||x|| * sqrt(d): one learned scalar (Nguyen & Salazar 2019)"""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.g = torch.nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self):
        torch.nn.init.ones_(self.g)

    def forward(self, x):
        return self.g * x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps)


def test_registered_norm_layer_is_counted_and_planned(bench_cli):
    from models import register_norm

    register_norm("scalenorm", ScaleNorm)
    assert plugins.smoke_test("norm layer", "scalenorm") is None
    cfg = TransformerConfig(vocab_size=64, d_model=32, n_layers=3, n_heads=4, ref_intermediate_size=88,
                            norm_layer="scalenorm", scheme="sandwich")
    built = sum(p.numel() for p in Transformer(cfg).parameters())
    assert count_params(cfg).total == built == 2 * 64 * 32 + 3 * (4 * 32 * 32 + 3 * 32 * 88 + 4) + 1
    (cell,) = plan(bench_cli, "plan", "--scale", "nano", "--activation", "swiglu", "--norm", "pre",
                   "--model.norm_layer", "scalenorm")
    assert cell["params"] == count_params(resolve_nano("scalenorm").model).total
    assert cell["id"] != plan(bench_cli, "plan", "--scale", "nano", "--activation", "swiglu", "--norm", "pre")[0]["id"]


def resolve_nano(norm_layer: str):
    from bench.run.config.presets import resolve

    return resolve({"scale": "nano", "activation": "swiglu", "norm": "pre", "model.norm_layer": norm_layer})


def test_no_import_circle_in_models():
    """Every `from .x import` in models/ (function bodies included) forms an acyclic graph, and
    registry.py imports no other module of the package."""
    graph = {}
    for path in (ROOT / "models").glob("*.py"):
        tree = ast.parse(path.read_text())
        graph[path.stem] = {n.module.split(".")[0] for n in ast.walk(tree)
                            if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}
    assert graph["registry"] <= {"names"}
    state = {}

    def visit(node, trail):
        if state.get(node) == "done":
            return
        assert state.get(node) != "open", f"import circle: {' -> '.join(trail + [node])}"
        state[node] = "open"
        for dep in graph.get(node, ()):
            visit(dep, trail + [node])
        state[node] = "done"

    for node in graph:
        visit(node, [])


# ---- loading: --plugin, matrix plugins:, entry points ------------------------------------------


def test_plugin_flag_list_and_plan(bench_cli):
    code, out, err = bench_cli("--plugin", MY_EXT, "list", "--json")
    assert code == 0, err
    regs = json.loads(out)
    assert regs["activations"]["relu2_glu"].startswith("gated: relu(gate x)^2 * up x")
    assert "[plugin my_ext]" in regs["activations"]["relu2_glu"] and "[plugin" not in regs["activations"]["swiglu"]
    assert regs["schemes"]["rezero_pre"].startswith("ReZero on Pre-LN")
    cells = plan(bench_cli, "--plugin", MY_EXT, "plan", "--scale", "micro", "--activation", "relu2_glu,gelu,swiglu",
                 "--norm", "rezero_pre,pre")
    h = {(c["activation"], c["norm"]): c["intermediate_size"] for c in cells}
    assert h == {("relu2_glu", "rezero_pre"): MICRO_H, ("relu2_glu", "pre"): MICRO_H, ("gelu", "rezero_pre"): 516,
                 ("gelu", "pre"): 516, ("swiglu", "rezero_pre"): MICRO_H, ("swiglu", "pre"): MICRO_H}
    by = {(c["activation"], c["norm"]): c for c in cells}
    assert by[("relu2_glu", "pre")]["params"] == by[("swiglu", "pre")]["params"]
    assert by[("relu2_glu", "rezero_pre")]["params"] == by[("swiglu", "pre")]["params"] + 4 * 2  # 4 layers x 2 alphas
    assert plugins.LOADED["my_ext"].how == "flag"
    assert os.environ[plugins.ENV] == MY_EXT  # exported for worker processes


def test_matrix_plugins_key(tmp_path, monkeypatch, bench_cli):
    cells = plan(bench_cli, "plan", str(EXAMPLE / "matrix.yaml"))
    assert {(c["activation"], c["norm"]) for c in cells} == {
        (a, n) for a in ("swiglu", "relu2_glu") for n in ("pre", "pre+gpas", "rezero_pre")}
    assert all(c["intermediate_size"] == MICRO_H for c in cells)
    assert plugins.LOADED["my_ext"].how.startswith("matrix ")
    # a dotted module name found next to the user (the working directory), as `python -m` finds it
    write(tmp_path, "dotted_ext.py", """
        import torch.nn.functional as F
        from torch import nn
        from models import register_activation

        @register_activation("relu3")
        class ReLU3(nn.Module):
            '''relu(x)^3'''
            gated = False
            def forward(self, x):
                return F.relu(x) ** 3
    """)
    m = write(tmp_path, "m.yaml", """
        plugins: [dotted_ext]
        axes: {scale: [micro], activation: [relu3], norm: [pre]}
    """)
    monkeypatch.chdir(tmp_path)
    try:
        (cell,) = plan(bench_cli, "plan", str(m))
        assert cell["intermediate_size"] == 516  # pointwise: 3/2 h_ref
    finally:
        sys.modules.pop("dotted_ext", None)


@pytest.mark.slow  # a subprocess that imports torch
def test_entry_point_of_a_package_on_sys_path(tmp_path):
    """A package 'installed' by a folder on sys.path: its module and a *.dist-info with entry_points.txt."""
    (tmp_path / "ep_ext.py").write_text((EXAMPLE / "my_ext.py").read_text())
    info = tmp_path / "ep_ext-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-ext\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text("[llm_arch_bench.plugins]\nmy_parts = ep_ext\n")
    (info / "top_level.txt").write_text("ep_ext\n")
    code = ("import json, sys; from bench import cli; rc = cli.main(sys.argv[1:]); from bench.plugins import LOADED; "
            "print('LOADED=' + json.dumps({k: [v.version, v.how] for k, v in LOADED.items()})); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "LITDATA_DISABLE_VERSION_CHECK": "1"}
    r = subprocess.run([sys.executable, "-c", code, "plan", "--scale", "micro", "--activation", "relu2_glu",
                        "--norm", "rezero_pre", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    body, _, loaded = r.stdout.rpartition("LOADED=")
    assert json.loads(loaded) == {"ep_ext": ["0.3", "entry point my_parts"]}
    (cell,) = json.loads(body)["cells"]
    assert cell["intermediate_size"] == MICRO_H and cell["norm"] == "rezero_pre"


# ---- provenance: the source is in the hash, built-in ids do not move ------------------------------


def test_builtin_cell_ids_unchanged_with_plugins_loaded():
    ids = [c.id for c in expand(load_matrix("default"))]
    assert ids[:2] == ["micro-swiglu-pre-s0-c68ffd", "micro-swiglu-pre_gpas-s0-76e390"]  # the ids before plugins
    plugins.load_plugin(MY_EXT)
    assert [c.id for c in expand(load_matrix("default"))] == ids


def _plan_ids(plugin: Path) -> dict[str, str]:
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"}
    r = subprocess.run([sys.executable, "-m", "bench.cli", "--plugin", str(plugin), "plan", "--scale", "micro",
                        "--activation", "relu2_glu,swiglu", "--norm", "pre,rezero_pre", "--json"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return {f"{c['activation']}/{c['norm']}": c["id"] for c in json.loads(r.stdout)["cells"]}


@pytest.mark.slow  # trains nano cells twice
def test_changing_the_plugin_source_makes_new_cells(tmp_path):
    p = tmp_path / "my_ext.py"
    source = (EXAMPLE / "my_ext.py").read_text()
    p.write_text(source)
    before = _plan_ids(p)
    p.write_text(source.replace("return F.relu(g).square() * u", "return F.relu(g).pow(2) * u"))
    after = _plan_ids(p)
    assert before["swiglu/pre"] == after["swiglu/pre"] == "micro-swiglu-pre-s0-c68ffd"  # built-in: untouched
    for cell in ("relu2_glu/pre", "relu2_glu/rezero_pre", "swiglu/rezero_pre"):
        assert before[cell] != after[cell], cell  # the module's source changed: every part from it is new


def test_config_hash_holds_the_fingerprint():
    from bench.run.config.presets import resolve

    base = resolve({"scale": "micro", "activation": "swiglu", "norm": "pre"})
    plugins.load_plugin(MY_EXT)
    cfg = resolve({"scale": "micro", "activation": "relu2_glu", "norm": "pre"})
    prov = plugins.provenance(cfg)
    (part,) = prov["parts"].values()
    assert part["name"] == "relu2_glu" and part["source"] == "my_ext.ReLU2GLU" and len(part["sha256"]) == 64
    assert prov["loaded"][0]["module"] == "my_ext" and prov["loaded"][0]["how"] == "flag"
    assert plugins.provenance(base)["parts"] == {} and base.config_hash() == resolve(
        {"scale": "micro", "activation": "swiglu", "norm": "pre"}).config_hash()


# ---- errors: one line naming the plugin, nothing trains ------------------------------------------


def _fails_in_one_line(bench_cli, tmp_path, plugin: str, *expected: str) -> None:
    out = tmp_path / "results"
    code, stdout, err = bench_cli("--plugin", plugin, "run", str(EXAMPLE / "matrix.yaml"), "--out", str(out))
    assert code == 2
    assert err.startswith("error:") and len(err.strip().splitlines()) <= 2, err  # rich may wrap one line
    for text in expected:
        assert text in flat(err), (text, err)
    assert not out.exists()  # nothing trained


def test_name_clash_is_one_line(tmp_path, bench_cli):
    p = write(tmp_path, "clash_ext.py", """
        from torch import nn
        from models import register_scheme

        @register_scheme("pre")
        class Mine(nn.Module):
            '''mine'''
    """)
    _fails_in_one_line(bench_cli, tmp_path, str(p), f"plugin '{p}' registers badly", "scheme 'pre' is already "
                       "registered (models.schemes.PreBlock)", "override=True")


def test_plugin_that_fails_to_import(tmp_path, bench_cli):
    p = write(tmp_path, "bad_import.py", "import no_such_module_here\n")
    _fails_in_one_line(bench_cli, tmp_path, str(p), f"plugin '{p}' failed to import: ModuleNotFoundError: "
                       "No module named 'no_such_module_here'")
    _fails_in_one_line(bench_cli, tmp_path, "no_such_plugin_pkg.ext",
                       "plugin 'no_such_plugin_pkg.ext' failed to import")


def test_bad_registration_and_broken_contract(bench_cli, tmp_path):
    p = write(tmp_path, "bad_flag.py", """
        from torch import nn
        from models import register_activation

        @register_activation("no_gated")
        class NoGated(nn.Module):
            '''forgot gated'''
            def forward(self, x):
                return x
    """)
    _fails_in_one_line(bench_cli, tmp_path, str(p), "registers badly", "activation 'no_gated'", "gated")
    q = write(tmp_path, "bad_shape.py", """
        from torch import nn
        from models import register_activation

        @register_activation("wrong_arity")
        class WrongArity(nn.Module):
            '''says gated, takes one input'''
            gated = True
            def forward(self, x):
                return x
    """)
    _fails_in_one_line(bench_cli, tmp_path, str(q), "registers activation 'wrong_arity' badly",
                       "a tiny model with it fails: TypeError")
    assert "wrong_arity" in ACTIVATIONS  # registered, but the CLI stopped before anything ran
    # a matrix naming a broken plugin: the same line, nothing trains
    m = write(tmp_path, "m.yaml", f"plugins: [{p.name}]\naxes: {{activation: [swiglu]}}\n")
    out = tmp_path / "results2"
    code, _, err = bench_cli("run", str(m), "--out", str(out))
    assert code == 2 and "bad_flag.py' registers badly" in flat(err) and not out.exists()


# ---- behaving like built-ins: check against the user's baseline, run, leaderboard, report --------


def test_check_against_a_user_baseline(bench_cli, tmp_path):
    base = tmp_path / "my-check.json"
    args = ("--plugin", MY_EXT, "check", "--activation", "relu2_glu", "--norm", "rezero_pre", "--steps", "3",
            "--jobs", "1", "--quiet")
    code, _, err = bench_cli(*args)  # the committed baseline holds built-in parts only
    assert code == 2 and "relu2_glu/rezero_pre uses a plugin part" in flat(err) and "--baseline" in err
    code, out, err = bench_cli(*args, "--baseline", str(base), "--update")
    assert code == 0, err
    assert list(json.loads(base.read_text())["cells"]) == ["relu2_glu/rezero_pre"]
    code, out, err = bench_cli(*args, "--baseline", str(base))
    assert code == 0 and "PASS" in out and "1 cells checked, 0 regressions" in flat(out), out + err


@pytest.mark.slow
def test_run_records_provenance_and_the_leaderboard_marks_plugin_cells(bench_cli, tmp_path):
    m = write(tmp_path, "m.yaml", f"""
        name: plug
        plugins: [{MY_EXT}]
        fixed: {{train.max_steps: 3, train.val_tokens: 2048, train.probe_every: 2, train.warmup_steps: 1}}
        axes: {{scale: [nano], activation: [relu2_glu, swiglu], norm: [rezero_pre, pre]}}
        exclude: [{{activation: relu2_glu, norm: pre}}, {{activation: swiglu, norm: rezero_pre}}]
    """)
    out = tmp_path / "results"
    code, stdout, err = bench_cli("run", str(m), "--out", str(out), "--quiet")
    assert code == 0, err
    recs = {json.loads(p.read_text())["activation"]: json.loads(p.read_text()) for p in out.glob("plug/*/record.json")}
    plug, builtin = recs["relu2_glu"], recs["swiglu"]
    assert plug["status"] == builtin["status"] == "ok"
    assert set(plug["plugins"]["parts"]) == {"activation", "scheme"}
    loaded = plug["plugins"]["loaded"][0]
    assert loaded["module"] == "my_ext" and loaded["how"].startswith("matrix")
    assert builtin["plugins"]["parts"] == {}
    alpha = plug["extra_probes"]["rezero_alpha"]["alpha"]
    assert len(alpha) == 4 and all(len(a) == 2 for a in alpha) and any(v != 0 for a in alpha for v in a)  # trained
    assert "extra_probes" not in builtin  # the probe skips cells without rezero_pre
    md = (out / "plug" / "leaderboard.md").read_text()
    row = next(line for line in md.splitlines() if f"| {plug['id']} |" in line)  # the long table
    sha = plug["plugins"]["parts"]["activation"]["sha256"][:8]
    assert row.endswith(f"| relu2_glu@{sha}, rezero_pre@{sha} |")
    assert next(line for line in md.splitlines() if f"| {builtin['id']} |" in line).endswith("| - |")
    assert "plugin: the cell uses parts registered by a plugin" in md
