"""The --section.field overrides through jsonargparse: the values they type hash as before (cell ids
recorded before jsonargparse replaced the hand-written coercion), the spellings users type keep their
meaning, --config FILE works, and the help comes from the field docstrings."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from bench import cli
from bench.errors import ConfigError
from bench.run.config.fields import fields, typed

# val_tokens as the default matrix had it when these ids were recorded (it now fixes 32768)
BASE = ['--scale', 'nano', '--activation', 'swiglu,powlu', '--norm', 'pre,pre+gpas', '--train.val_tokens', '65536']
NAMES = ["nano-swiglu-pre-s0", "nano-swiglu-pre_gpas-s0", "nano-powlu-pre-s0", "nano-powlu-pre_gpas-s0"]

# `bench plan BASE <overrides> --json`: the ids' hashes, recorded with the hand-written coercion.
IDS = [
    ([],
     ["88436f", "9b6afe", "1a5c71", "1246f0"]),
    (["--train.lr", "2e-3", "--model.gpas_act", "tanh", "--recipe", "gpas"],
     ["e44bb9", "c44a8a", "519bc2", "c8f456"]),
    (["--train.max_steps", "50", "--data.packing", "false", "--train.betas", "0.9,0.999"],
     ["f35331", "a034b3", "a5e996", "5d81c4"]),
    (["--data.ood_corpus", "none", "--data.eval", "a=bundled,b=kjv", "--train.compile", "true"],
     ["373799", "824114", "f058e0", "255c3a"]),
    (["--data.storage_options", "endpoint_url=http://127.0.0.1:9000", "--data.max_cache_size", "1GB"],
     ["88436f", "9b6afe", "1a5c71", "1246f0"]),
    (["--train.devices", "2", "--train.strategy", "ddp", "--train.deterministic", "true",
      "--train.precision", "bf16-mixed"],
     ["bab66d", "cfa28f", "c6997a", "e7d50e"]),
    (["--train.max_steps", "1e3", "--data.packing", "0", "--train.val_tokens", "4096.0"],
     ["7adf81", "bee83d", "48c40e", "113e22"]),
    (["--model.poly_order", "2", "--train.eps", "1e-6", "--train.weight_decay", "0", "--data.val_fraction", ".1"],
     ["bb9b01", "810eae", "62292a", "de6254"]),
    (["--data.ood_corpus", "null", "--train.compile", "False", "--train.fused_loss", "TRUE"],
     ["481567", "843689", "9d9b88", "c7941a"]),
    (["--data.eval", "{\"x\": \"kjv\"}", "--train.betas", "0.8, 0.9"],
     ["3c6149", "1c0cac", "076b70", "6f3134"]),
]
MOE = (["--scale", "nano-moe", "--activation", "swiglu", "--norm", "pre", "--model.ffn", "moe,dense",
        "--train.val_tokens", "65536"],
       ['nano-moe-swiglu-pre-ffnmoe-s0-41d524', 'nano-moe-swiglu-pre-ffndense-s0-d49bee'])
# every shipped matrix: (cells, sha256 of its ids joined by spaces, first id), recorded the same way
MATRICES = {
    # default: ids moved once, on purpose, when the matrix halved train.val_tokens (docs/changes.md)
    'default': (8, '64d1cdc769a1a254', 'micro-swiglu-pre-s0-c68ffd'),
    'zoo': (231, '06cf365be41a5d01', 'micro-relu-pre-s0-3cff1c'),
    'moe': (12, '54f03eb44885ebaa', 'micro-moe-swiglu-pre-ffnmoe-s0-850edd'),
    'nano-precision': (4, 'efa2e02a326c72df', 'nano-swiglu-pre-precision32-true-s0-c2557d'),
    'gpu-71m': (6, 'c13dd9de8323c1f9', 'gpas-71m-swiglu-pre-s0-35de67'),
    'gpu-71m-precision': (6, '52b7bdd5a669516c', 'gpas-71m-swiglu-pre-precisionbf16-mixed-s0-7052ef'),
    'examples/plugin/matrix.yaml': (6, '6dbce2f6d217016d', 'micro-swiglu-pre-s0-88b7f7'),
}


def plan_ids(capsys, argv: list[str]) -> list[str]:
    assert cli.main(["plan", *argv, "--json"]) == 0
    return [c["id"] for c in json.loads(capsys.readouterr().out)["cells"]]


@pytest.mark.parametrize("overrides,hashes", IDS, ids=[" ".join(o) or "none" for o, _ in IDS])
def test_override_values_hash_as_before(capsys, overrides, hashes):
    assert plan_ids(capsys, BASE + overrides) == [f"{n}-{h}" for n, h in zip(NAMES, hashes)]


def test_an_override_with_commas_is_still_an_axis(capsys):
    assert plan_ids(capsys, MOE[0]) == MOE[1]


@pytest.mark.parametrize("matrix", MATRICES)
def test_shipped_matrices_hash_as_before(capsys, matrix):  # zoo: 231 cells, ~2 s of the ~5 s of this file
    ids = plan_ids(capsys, [matrix])
    assert (len(ids), hashlib.sha256(" ".join(ids).encode()).hexdigest()[:16], ids[0]) == MATRICES[matrix]


# value as typed -> value the field holds: the spellings the CLI and YAML files have always taken
SPELLINGS = [
    ("train.lr", "2e-3", 0.002), ("train.lr", 0, 0.0), ("train.max_steps", "1e3", 1000),
    ("train.max_steps", "4096.0", 4096), ("train.max_steps", 300.0, 300), ("data.packing", "0", False),
    ("data.packing", "off", False), ("data.packing", "True", True), ("train.betas", "0.9,0.999", (0.9, 0.999)),
    ("train.betas", "0.8, 0.9", (0.8, 0.9)), ("train.betas", [0.9, 0.95], (0.9, 0.95)),
    ("data.eval", "a=bundled,b=kjv", {"a": "bundled", "b": "kjv"}), ("data.eval", '{"x": "kjv"}', {"x": "kjv"}),
    ("data.eval", "none", {}), ("data.eval", {"a": 5}, {"a": "5"}), ("data.ood_corpus", "none", None),
    ("data.ood_corpus", "None", None), ("data.ood_corpus", "null", None), ("train.compile", True, "True"),
    ("train.devices", 2, "2"), ("train.devices", "0,1", "0,1"), ("model.n_kv_heads", "none", None),
    ("model.moe_capacity_factor", "1", 1.0), ("model.ffn", "moe,dense", "moe,dense"), ("seed", "1", 1),
]


@pytest.mark.parametrize("path,value,held", SPELLINGS)
def test_spellings_keep_their_meaning(path, value, held):
    got = typed(path, value)
    assert got == held and type(got) is type(held)


@pytest.mark.parametrize("path,value,needle", [
    ("train.lr", "fast", "train.lr: cannot read 'fast' as float"), ("train.lr", "nan", "cannot read 'nan' as float"),
    ("train.max_steps", "2.5", "cannot read '2.5' as int"), ("train.max_steps", [1, 2], "cannot read [1, 2] as int"),
    ("data.eval", "a", "data.eval: expected NAME=VALUE,... or a JSON object"),
])
def test_bad_values_are_one_line(path, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace(".", r"\.")):
        typed(path, value)


def test_every_field_has_its_docstring_as_help():
    f = fields()
    assert f["train.lr"].help == "Peak learning rate." and f["train.lr"].default == 0.003
    assert f["model.activation"].help and f["data.eval"].default == {}
    assert all(x.help for x in f.values()), [k for k, x in f.items() if not x.help]


def test_config_file_in_command_line_order(capsys, tmp_path):
    (tmp_path / "c.yaml").write_text("train: {max_steps: 50, betas: [0.9, 0.999]}\ndata: {packing: false}\n")
    hashes = dict((" ".join(o), h) for o, h in IDS)[
        "--train.max_steps 50 --data.packing false --train.betas 0.9,0.999"]
    assert plan_ids(capsys, BASE + ["--config", str(tmp_path / "c.yaml")]) == [
        f"{n}-{h}" for n, h in zip(NAMES, hashes)]
    # later wins: a flag after the file overrides it, a flag before it is overridden
    after = plan_ids(capsys, BASE + ["--config", str(tmp_path / "c.yaml"), "--train.max_steps", "1e3",
                                     "--data.packing", "0", "--train.val_tokens", "4096.0"])
    assert after == plan_ids(capsys, BASE + ["--train.betas", "0.9,0.999", "--train.max_steps", "1e3",
                                             "--data.packing", "0", "--train.val_tokens", "4096.0"])
    assert after != plan_ids(capsys, BASE + ["--config", str(tmp_path / "c.yaml")])
    before = plan_ids(capsys, BASE + ["--train.max_steps", "7", "--config", str(tmp_path / "c.yaml")])
    assert before == plan_ids(capsys, BASE + ["--config", str(tmp_path / "c.yaml")])


def test_a_bad_config_file_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_text("train: {lr: fast}\n")
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"}
    r = subprocess.run([sys.executable, "-m", "bench.cli", "plan", "--scale", "nano", "--config",
                        str(tmp_path / "c.yaml")], capture_output=True, text=True, env=env)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: --config ") and "train.lr" in r.stderr and "Traceback" not in r.stderr


def test_help_shows_docstrings_and_one_default():
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "COLUMNS": "300"}
    r = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--help"], capture_output=True, text=True, env=env)
    assert r.returncode == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("--train.lr "))
    assert line.split() == ["--train.lr", "FLOAT", "Peak", "learning", "rate.", "[default:", "0.003]"]
    assert "--config FILE" in r.stdout and "(default:" not in r.stdout


def test_top_level_help_imports_neither_jsonargparse_nor_torch():
    code = ("import sys\nfrom bench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('jsonargparse' in sys.modules, 'torch' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    assert r.stderr.split() == ["False", "False"], r.stderr
