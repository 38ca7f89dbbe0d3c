"""`bench plan` / `bench list`, matrix expansion and config errors (no training here)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import cli
from bench.errors import ConfigError
from bench.run.config.schema import gpas_note
from bench.run.config.presets import resolve
from bench.run.config.matrix import MATRIX_DIR, expand, load_matrix
from models import ACTIVATIONS, GATE_ACTS, NORMS, POSITIONS, SCHEMES, UnknownName

ROOT = Path(__file__).resolve().parents[2]


def flat(text: str) -> str:
    """rich wraps stderr at the console width: compare with whitespace collapsed."""
    return " ".join(text.split())


def nospace(text: str) -> str:
    return "".join(text.split())


def plan_json(capsys, *args) -> dict:
    assert cli.main(["plan", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def polycom_total(h: int, gated: bool, act_scalars: int = 0) -> int:
    """d=2048, 24 layers, vocab 32000, untied head, RMSNorm gains; written out independently."""
    d, L, V = 2048, 24, 32000
    return 2 * V * d + L * (4 * d * d + (3 if gated else 2) * d * h + act_scalars + 2 * d) + d


# ---- bench plan --------------------------------------------------------------------------------------


def test_plan_polycom_1b_matched_sizes(capsys):
    out = plan_json(capsys, "--scale", "polycom-1b", "--activation", "swiglu,polynorm,powlu", "--norm", "pre")
    cells = out["cells"]
    assert [c["activation"] for c in cells] == ["swiglu", "polynorm", "powlu"]
    for c in cells:
        for key in ("id", "activation", "norm", "scale", "intermediate_size", "params", "params_non_embedding"):
            assert key in c, key
        assert c["norm"] == "pre" and c["scale"] == "polycom-1b"
        assert c["params_non_embedding"] == c["params"] - 2 * 32000 * 2048
    assert [c["intermediate_size"] for c in cells] == [5504, 8256, 5504]
    assert cells[0]["params"] == polycom_total(5504, True)
    assert cells[1]["params"] == polycom_total(8256, False, act_scalars=4)
    assert cells[2]["params"] == polycom_total(5504, True)
    params = [c["params"] for c in cells]
    assert (max(params) - min(params)) / min(params) < 1e-3
    assert len({c["id"] for c in cells}) == 3


def test_plan_every_activation_at_polycom_1b(capsys):
    cells = plan_json(capsys, "--scale", "polycom-1b", "--activation", ",".join(ACTIVATIONS), "--norm", "pre")["cells"]
    assert [c["activation"] for c in cells] == list(ACTIVATIONS)
    for c in cells:
        assert c["intermediate_size"] == (5504 if ACTIVATIONS[c["activation"]].gated else 8256)
    params = [c["params"] for c in cells]
    assert (max(params) - min(params)) / min(params) < 1e-3


def test_plan_accepts_gpas_names(capsys):
    norms = ["pre", "pre+gpas", "post+gpas", "deepnorm+gpas", "sandwich+gpas", "mixln+gpas", "lns+gpas"]
    cells = plan_json(capsys, "--scale", "nano", "--activation", "swiglu", "--norm", ",".join(norms))["cells"]
    assert [c["norm"] for c in cells] == norms
    by_norm = {c["norm"]: c["params"] for c in cells}
    assert by_norm["pre+gpas"] == by_norm["pre"] + 4  # one gate per layer, nano has 4 layers
    assert len({c["id"] for c in cells}) == len(norms)


def test_plan_overrides_apply(capsys):
    cells = plan_json(capsys, "--scale", "nano", "--activation", "relu", "--norm", "pre",
                      "--model.ffn_multiple_of", "16", "--train.lr", "0.01")["cells"]
    assert cells[0]["intermediate_size"] % 16 == 0


@pytest.mark.parametrize("flag,bad,near,choices", [
    ("--activation", "swigl", "swiglu", list(ACTIVATIONS)),
    ("--norm", "pre+gaps", "pre+gpas", [n for s in SCHEMES for n in (s, s + "+gpas")]),
    ("--norm", "prenorm", None, [n for s in SCHEMES for n in (s, s + "+gpas")]),
    ("--scale", "polycom1b", "polycom-1b", ["nano", "micro", "polycom-1b", "gpas-71m", "gpas-7b"]),
])
def test_plan_unknown_names(capsys, flag, bad, near, choices):
    assert cli.main(["plan", flag, bad, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = flat(captured.err)
    assert f"'{bad}'" in err
    if near:
        assert f"Did you mean '{near}'?" in err
    else:
        assert "Did you mean" in err
    valid = err.split("Valid choices:")[1]
    for name in choices:
        assert name in [v.strip() for v in valid.split(",")], name
    assert "Traceback" not in captured.err


def test_plan_prenorm_suggests_pre(capsys):
    assert cli.main(["plan", "--norm", "prenorm"]) == 2
    assert "Did you mean 'pre'?" in flat(capsys.readouterr().err)


def test_plan_unknown_override_value(capsys):
    assert cli.main(["plan", "--scale", "nano", "--model.scheme", "sandwhich"]) == 2
    err = flat(capsys.readouterr().err)
    assert "'sandwich'" in err


def test_plan_bad_seed_is_a_clean_error(capsys):
    assert cli.main(["plan", "--scale", "nano", "--seed", "x"]) == 2
    err = capsys.readouterr().err
    assert "--seed takes comma-separated integers" in err and "Traceback" not in err


def test_plan_help_lists_config_fields(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as e:
        cli.main(["plan", "--help"])
    assert e.value.code == 0
    help_text = flat(capsys.readouterr().out)
    assert "--model.activation" in help_text
    assert "--train.lr" in help_text
    assert "--model.gpas_position" in help_text and "--data.tokenizer" in help_text
    # each with its field's docstring as help text
    assert "FFN activation, a name from models.ACTIVATIONS" in help_text
    assert "Peak learning rate." in help_text
    assert "--scale" in help_text and "--activation" in help_text and "--norm" in help_text


def test_plan_help_in_a_subprocess():
    r = subprocess.run([sys.executable, "-m", "bench.cli", "plan", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "--model.activation" in r.stdout and "--train.lr" in r.stdout
    assert "Peak learning rate." in flat(r.stdout)


# ---- bench list ----------------------------------------------------------------------------------------


def test_list_json_has_every_registry(capsys):
    assert cli.main(["list", "--json"]) == 0
    regs = json.loads(capsys.readouterr().out)
    assert list(regs["activations"]) == list(ACTIVATIONS)
    assert list(regs["schemes"]) == list(SCHEMES)
    assert list(regs["norm_layers"]) == list(NORMS)
    assert list(regs["gpas_gate_acts"]) == list(GATE_ACTS)
    assert list(regs["gpas_positions"]) == list(POSITIONS)
    assert {"nano", "micro", "small", "polycom-1b", "gpas-71m", "gpas-130m", "gpas-250m", "gpas-350m", "gpas-1b",
            "gpas-7b"} <= set(regs["scales"])
    assert {"cpu", "gpas", "polycom"} <= set(regs["recipes"])
    assert set(regs["matrices"]) == {p.stem for p in MATRIX_DIR.glob("*.yaml")} >= {"default", "zoo"}
    for name, doc in regs["activations"].items():
        assert doc and doc.startswith("gated: ") == ACTIVATIONS[name].gated, name
    assert all(regs["schemes"].values())


# ---- matrices ---------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_default_matrix_order_and_ids_stable():
    m = load_matrix("default")
    a, b = expand(m), expand(load_matrix("default"))
    assert [c.id for c in a] == [c.id for c in b]
    assert len({c.id for c in a}) == len(a)
    expected = list(itertools.product(*m.axes.values()))
    assert [tuple(v for _, v in c.axes) for c in a] == expected
    for c in a:
        combo = dict(c.axes)
        assert c.config.model.activation == combo["activation"]
        assert c.config.norm == combo["norm"]
        assert c.id.startswith(f"{combo['scale']}-{combo['activation']}-{combo['norm'].replace('+', '_')}-")


def test_ids_stable_across_processes():
    code = ("from bench.run.config.matrix import expand, load_matrix; "
            "print('\\n'.join(c.id for c in expand(load_matrix('default'))))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [c.id for c in expand(load_matrix("default"))]


def test_matrix_expansion_order_and_exclusions(tmp_path):
    path = write(tmp_path, """\
        name: t
        description: test
        fixed:
          train.max_steps: 5
        axes:
          scale: [nano]
          activation: [swiglu, gelu, polynorm]
          norm: [pre, pre+gpas]
          seed: [0, 1]
        exclude:
          - {activation: gelu, norm: pre+gpas}
          - {activation: polynorm, seed: 1}
        """)
    m = load_matrix(str(path))
    assert m.name == "t"
    cells = expand(m)
    combos = [(a, n, s) for a, n, s in itertools.product(["swiglu", "gelu", "polynorm"], ["pre", "pre+gpas"], [0, 1])
              if not (a == "gelu" and n == "pre+gpas") and not (a == "polynorm" and s == 1)]
    assert len(combos) == 8
    got = [(c.config.model.activation, c.config.norm, c.config.seed) for c in cells]
    assert got == combos
    assert all(c.config.train.max_steps == 5 and c.config.scale == "nano" for c in cells)
    ids = [c.id for c in cells]
    assert len(set(ids)) == len(ids)
    assert ids == [c.id for c in expand(load_matrix(str(path)))]
    assert all(f"-s{s}-" in i for i, (_, _, s) in zip(ids, combos))
    # a changed config is a different cell id
    changed = [c.id for c in expand(m, overrides={"train.lr": 0.5})]
    assert not set(changed) & set(ids)


def test_matrix_only_filter_and_extra_axis(tmp_path):
    path = write(tmp_path, """\
        axes:
          scale: [nano]
          activation: [swiglu]
          norm: [pre]
          model.poly_order: [2, 3]
          seed: [0]
        """)
    cells = expand(load_matrix(str(path)), only={"activation": ["polyrelu", "relu"]})
    assert [(c.config.model.activation, c.config.model.poly_order) for c in cells] == [
        ("polyrelu", 2), ("polyrelu", 3), ("relu", 2), ("relu", 3)]
    assert all("poly_order" in c.id for c in cells)
    assert len({c.id for c in cells}) == 4


def test_malformed_yaml_names_file_and_line(tmp_path, capsys):
    path = write(tmp_path, """\
        name: bad
        axes:
          activation: [swiglu, gelu
          norm: [pre]
        """, "bad.yaml")
    with pytest.raises(ConfigError) as e:
        load_matrix(str(path))
    msg = str(e.value)
    assert f"{path}:4" in msg and "malformed YAML" in msg
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:4" in nospace(err)
    assert "Traceback" not in err


def test_bad_matrix_key_and_axis(tmp_path, capsys):
    path = write(tmp_path, "axis:\n  activation: [swiglu]\n", "key.yaml")
    with pytest.raises(UnknownName, match="Did you mean 'axes'"):
        load_matrix(str(path))
    path = write(tmp_path, "axes:\n  activation: swiglu\n", "scalar.yaml")
    with pytest.raises(ConfigError, match="non-empty list"):
        load_matrix(str(path))
    path = write(tmp_path, "axes:\n  activation: [swiglu, swishglu]\n  scale: [nano]\n", "name.yaml")
    assert cli.main(["plan", str(path)]) == 2
    assert "Did you mean 'swiglu'?" in flat(capsys.readouterr().err)


def test_missing_matrix(capsys):
    assert cli.main(["plan", "defualt"]) == 2
    assert "Did you mean 'default'?" in flat(capsys.readouterr().err)


# ---- config resolution ------------------------------------------------------------------------------


def test_resolve_norm_names_and_extension_note():
    for s in SCHEMES:
        for g in (False, True):
            name = s + ("+gpas" if g else "")
            cfg = resolve({"scale": "nano", "norm": name})
            assert (cfg.model.scheme, cfg.model.gpas, cfg.norm) == (s, g, name)
    assert gpas_note(resolve({"scale": "nano", "norm": "post+gpas"}))
    assert gpas_note(resolve({"scale": "nano", "norm": "pre+gpas"})) is None
    with pytest.raises(ConfigError, match=r"\+gpas"):
        resolve({"scale": "nano", "norm": "pre+gpaz"})


def test_resolve_precedence():
    # defaults < scale < recipe < settings < overrides
    cfg = resolve({"scale": "gpas-71m", "recipe": "gpas"})
    assert cfg.train.lr == 1e-3 and cfg.train.optimizer == "adam" and cfg.model.scaled_embed
    assert cfg.model.vocab_size == 32000
    cfg = resolve({"scale": "gpas-71m", "recipe": "gpas", "train.lr": 0.1}, {"train.lr": 0.2})
    assert cfg.train.lr == 0.2


# ---- the command line itself -----------------------------------------------------------------------------


def test_nothing_in_bench_imports_the_cli():
    """bench/cli.py is the top of the import graph: no module of bench imports it back."""
    import ast

    offenders = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        if path.name == "cli.py" and path.parent.name == "bench":
            continue
        package = path.relative_to(ROOT).with_suffix("").parts[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = list(package[:len(package) - node.level + 1]) if node.level else []
                module = ".".join(base + (node.module.split(".") if node.module else []))
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if "bench.cli" in names:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"]])
def test_help_imports_no_torch(argv):
    code = ("import sys; from bench import cli\ntry:\n    cli.main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print(e.code, 'torch' in sys.modules, 'lightning' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    assert r.stderr.split() == ["0", "False", "False"], r.stderr
    assert "usage: bench" in r.stdout


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, p in action.choices.items():
                yield name, p
                yield from ((f"{name} {n}", q) for n, q in _subparsers(p))


def test_every_option_shows_one_default_the_effective_one(monkeypatch):
    """Each option's help says its default at most once ('[default: X]', never also argparse's
    '(default: None)'); an option with a value by default shows it."""
    import argparse
    import re

    monkeypatch.setenv("COLUMNS", "400")
    parser = cli.build_parser()
    seen = 0
    for name, p in _subparsers(parser):
        fmt = p._get_formatter()
        for action in p._actions:
            if action.help in (None, argparse.SUPPRESS) or isinstance(action, argparse._SubParsersAction):
                continue
            text = fmt._expand_help(action)
            assert "(default:" not in text, (name, action.dest, text)
            assert len(re.findall(r"\[default", text)) <= 1, (name, action.dest, text)
            if action.default not in (None, False, [], argparse.SUPPRESS) and action.nargs != 0:
                assert "[default" in text, (name, action.dest, text)
            seen += 1
    assert seen > 500  # every command's options, config overrides included
    plan = " ".join(subprocess.run([sys.executable, "-m", "bench.cli", "plan", "--help"], cwd=ROOT, text=True,
                                   capture_output=True, timeout=120,
                                   env={**os.environ, "COLUMNS": "400"}).stdout.split())
    assert "budget every activation is matched to. [default: 344]" in plan and "(default: None)" not in plan


def test_broken_pipe_is_a_quiet_exit():
    """`bench plan --json | head`: the reader leaves early; no traceback, the SIGPIPE status."""
    p = subprocess.Popen([sys.executable, "-m", "bench.cli", "plan", "--scale", "nano", "--json"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == "", err


def test_run_name_names_the_results_folder(tmp_path, capsys):
    sel = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.max_steps", "3",
           "--train.val_every", "3", "--train.val_tokens", "1024", "--train.probe_every", "0"]
    assert cli.main(["run", *sel, "--out", str(tmp_path), "--ckpt-every", "0", "--quiet", "--name", "mine"]) == 0
    (rec,) = (tmp_path / "mine").glob("*/record.json")
    assert json.loads(rec.read_text())["status"] == "ok" and not (tmp_path / "default").exists()
    capsys.readouterr()
    assert cli.main(["status", *sel, "--out", str(tmp_path), "--name", "mine", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["matrix"] == "mine" and [c["state"] for c in status["cells"]] == ["done"]
    assert cli.main(["table", str(tmp_path / "mine"), "--format", "csv"]) == 0
    assert rec.parent.name in capsys.readouterr().out
    for bad in ("a/b", "..", " "):
        assert cli.main(["run", *sel, "--out", str(tmp_path), "--name", bad]) == 2
        err = capsys.readouterr().err
        assert "--name takes a folder name" in flat(err) and "Traceback" not in err


@pytest.mark.slow  # a subprocess that imports torch
def test_list_imports_the_registries_and_no_data_or_tables():
    """`bench list` needs the registries (models/ imports torch; the probes are Lightning callbacks,
    registered where they are defined) but no data stack and no results tables."""
    mods = ("datamodules", "litdata", "bench.results.tables.leaderboard", "jinja2")
    code = ("import sys; from bench import cli; rc = cli.main(['list', '--json']); "
            f"print(rc, *(m in sys.modules for m in {mods!r}), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    assert r.stderr.split() == ["0", "False", "False", "False", "False"], r.stderr
    regs = json.loads(r.stdout)
    assert "activations" in regs and list(regs["probes"]) == ["training", "outliers", "moe"]
