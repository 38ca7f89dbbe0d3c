"""The config in parts: a pure resolve, data checks that decide the vocabulary before the id is
hashed, matrix files checked against their shape once, and plans that stay fast (no training here)."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.run.config import data_checks as checks, matrix as matrix_mod, presets
from bench.errors import ConfigError
from bench.run.config.schema import DataConfig
from bench.run.config.presets import resolve
from bench.run.config.matrix import Cell, Matrix, axis_order, expand, load_matrix

ROOT = Path(__file__).resolve().parents[4]


def write(tmp_path, text: str, name: str = "m.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


# ---- vocabulary before identity ----------------------------------------------------------------

def tokenizer_files(tmp_path) -> dict[str, Path]:
    from datamodules import train_bpe

    texts = ["the cat sat on the mat\n" * 20, "a dog ate the hat\n" * 20]
    hf = tmp_path / "tokenizer.json"
    train_bpe(texts, 300).save(hf)
    ranks = [bytes([i]) for i in range(256)] + [b"th", b"the"]
    tk = tmp_path / "tiny.tiktoken"
    tk.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for r, t in enumerate(ranks)))
    return {"tokenizer.json": hf, "tiktoken": tk}


@pytest.mark.parametrize("kind", ["tokenizer.json", "tiktoken"])
def test_a_tokenizer_file_decides_the_vocabulary_before_the_id_is_hashed(tmp_path, kind):
    """The cell id, hashed during expansion, already covers the vocabulary the data module will give,
    so the id's hash and the record's config_hash agree (the runner only checks it)."""
    from datamodules import build_tokenizer

    path = tokenizer_files(tmp_path)[kind]
    m = Matrix("t", "", {"scale": "nano", "data.tokenizer": str(path)}, {"seed": [0, 1]}, [])
    for cell in expand(m):
        cfg = cell.config
        vocab = build_tokenizer(cfg.data, [], tmp_path).vocab_size  # what the data module will say
        assert vocab not in (256, 32000) and cfg.model.vocab_size == vocab
        assert cell.id.endswith("-" + cfg.config_hash()[:6])


@pytest.mark.parametrize("data_vocab", [255, 257, 32000])
def test_a_data_module_with_another_vocabulary_fails_in_one_line_before_anything_is_written(tmp_path, data_vocab):
    """The config's vocabulary is the only decision: a data module that disagrees (the tokenizer
    changed after the ids were hashed) stops the cell, never trains it under a wrong id."""
    from bench.run.config.options import RunOptions
    from bench.run.engine.runner import train_cell
    from tiny_data import TinyDataModule

    (cell,) = expand(Matrix("t", "", {"scale": "nano", "train.max_steps": 2}, {}, []))
    dm = TinyDataModule()
    dm.vocab_size = data_vocab
    with pytest.raises(ConfigError) as e:
        train_cell(cell, "t", dm, RunOptions(out=tmp_path, quiet=True))
    text = str(e.value)
    assert len(text.splitlines()) == 1 and cell.id in text and str(data_vocab) in text and "256" in text
    assert cell.config.model.vocab_size == 256 and cell.id.endswith(cell.config.config_hash()[:6])
    assert not (tmp_path / "t").exists()  # no record, no curve, no checkpoint


def test_a_tokenizer_file_is_read_once_per_process(tmp_path, monkeypatch):
    import datamodules

    path = tokenizer_files(tmp_path)["tokenizer.json"]
    calls = []
    load = datamodules.load_tokenizer
    monkeypatch.setattr(datamodules, "load_tokenizer", lambda p: calls.append(p) or load(p))
    checks._file_vocab.cache_clear()
    m = Matrix("t", "", {"scale": "nano", "data.tokenizer": str(path)}, {"seed": list(range(20))}, [])
    assert len(expand(m)) == 20 and len(calls) == 1


def test_resolve_is_pure_and_the_checks_touch_the_data(tmp_path):
    """resolve() opens no corpus, tokenizer or object store (and imports neither datamodules nor
    Lightning); the checks that do say what is wrong in one line."""
    code = ("import sys; from bench.run.config.presets import resolve; "
            "c = resolve({'scale': 'nano', 'data.corpus': 's3://no-such-bucket/x', 'data.tokenizer': 'dataset'}); "
            "d = resolve({'scale': 'nano', 'data.corpus': '/no/such/corpus', 'data.tokenizer': '/no/tok.json'}); "
            "print(sorted(m for m in ('datamodules', 'lightning', 'litdata', 'boto3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                         env={**__import__("os").environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    with pytest.raises(ConfigError, match="corpus path not found: /no/such/corpus"):
        checks.check(resolve({"scale": "nano", "data.corpus": "/no/such/corpus"}))
    with pytest.raises(ConfigError, match="tokenizer file not found: /no/tok.json"):
        checks.check(resolve({"scale": "nano", "data.tokenizer": "/no/tok.json"}))


def test_shipped_corpora_are_the_data_modules_bundled_ones():
    import datamodules

    assert set(checks.SHIPPED) == set(datamodules.BUNDLED)
    from datamodules.checks import RESERVED

    assert presets.EVAL_RESERVED == RESERVED
    assert not checks.needs_data(DataConfig()) and checks.needs_data(DataConfig(corpus="x.txt"))


# ---- matrix files and values: one line naming the key and the type ----------------------------

SHAPES = {
    "axes a list": ("axes: [activation, norm]\n", "axes must be a mapping of setting -> list of values"),
    "fixed a list": ("fixed: [train.max_steps]\naxes: {seed: [0]}\n", "fixed must be a mapping"),
    "exclude a mapping": ("axes: {activation: [gelu, relu]}\nexclude: {activation: gelu}\n",
                          "exclude must be a list of mappings (e.g. - {activation: gelu, norm: pre}), got a mapping"),
    "exclude strings": ("axes: {activation: [gelu, relu]}\nexclude: [gelu]\n",
                        "each exclude entry must be a mapping of axis -> value (e.g. {activation: gelu}), "
                        "got a string"),
    "name a list": ("name: [x]\naxes: {seed: [0]}\n", "name must be a string, got a list"),
    "description a mapping": ("description: {a: 1}\naxes: {seed: [0]}\n", "description must be a string"),
    "misspelt exclude key": ("axes: {activation: [gelu, relu], norm: [pre]}\nexclude: [{activaton: gelu}]\n",
                             "unknown exclude key in"),
    "a value of the wrong type": ("fixed: {train.max_steps: [1, 2]}\n",
                                  "train.max_steps: cannot read [1, 2] as int"),
}


@pytest.mark.parametrize("case", list(SHAPES), ids=list(SHAPES))
def test_a_matrix_of_the_wrong_shape_is_one_line(bench_cli, one_line_error, tmp_path, case):
    text, needle = SHAPES[case]
    path = write(tmp_path, "fixed: {scale: nano}\n" + text if not text.startswith("fixed") else text)
    err = one_line_error(bench_cli("plan", path))
    assert needle in err, err
    assert "m.yaml" in err or needle.startswith("train."), err  # names the file, or the field


def test_a_misspelt_exclude_key_names_the_valid_keys(bench_cli, one_line_error, tmp_path):
    path = write(tmp_path, "axes: {activation: [gelu, relu], norm: [pre]}\nexclude: [{activaton: gelu}]\n")
    err = one_line_error(bench_cli("plan", path))
    assert "'activaton'. Did you mean 'activation'?" in err and "Valid choices: activation, norm, scale, seed" in err


def test_exclude_still_excludes(tmp_path):
    path = write(tmp_path, "fixed: {scale: nano}\naxes: {activation: [gelu, relu], norm: [pre, post]}\n"
                           "exclude: [{activation: gelu, norm: post}]\n")
    assert [c.id.split("-")[1:3] for c in expand(load_matrix(path))] == [["gelu", "pre"], ["relu", "pre"],
                                                                         ["relu", "post"]]


def test_a_matrix_that_is_not_utf8_is_one_line(bench_cli, one_line_error, tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("description: caf\u00e9\naxes: {seed: [0]}\n".encode("latin-1"))
    err = one_line_error(bench_cli("plan", str(path)))
    assert "latin1.yaml is not UTF-8" in err


@pytest.mark.parametrize("value, typ", [("inf", "int"), ("nan", "int"), ("1.5", "int"), ("1e999", "int")])
def test_a_non_integer_step_count_is_one_line(bench_cli, one_line_error, value, typ):
    err = one_line_error(bench_cli("plan", "--scale", "nano", "--train.max_steps", value))
    assert f"train.max_steps: cannot read '{value}' as {typ}" in err


def test_a_nan_learning_rate_is_one_line(bench_cli, one_line_error):
    err = one_line_error(bench_cli("plan", "--scale", "nano", "--train.lr", "nan"))
    assert "train.lr: cannot read 'nan' as float" in err


def test_an_absurd_matrix_is_refused_before_expanding(bench_cli, one_line_error, tmp_path, monkeypatch):
    path = write(tmp_path, f"axes: {{seed: {list(range(1000))}, train.lr: {[1e-3 + i * 1e-6 for i in range(1000)]}}}\n")
    monkeypatch.setattr(matrix_mod, "make_cell", lambda *a: pytest.fail("expanded a cell"))
    err = one_line_error(bench_cli("plan", path))
    assert "has 1,000,000 cells (1000 seed x 1000 train.lr), more than the 100,000" in err
    monkeypatch.setenv("BENCH_MAX_CELLS", "10")
    err = one_line_error(bench_cli("plan", "--scale", "nano", "--seed", ",".join(map(str, range(11)))))
    assert "more than the 10 a plan holds" in err


# ---- resolve: the same configs as before, from parts -------------------------------------------

def test_presets_and_overrides_resolve_in_order():
    cfg = resolve({"scale": "nano", "recipe": "gpas", "train.lr": "0.5", "norm": "pre+gpas"},
                  {"train.lr": 0.25, "model.gpas": "false"})
    assert cfg.train.lr == 0.25 and cfg.train.optimizer == "adam"  # the recipe's, then the override's
    assert cfg.model.scheme == "pre" and cfg.model.gpas is False  # the later setting wins over the shorthand
    a, b = resolve({"scale": "nano"}), resolve({"scale": "nano"})
    a.data.eval["x"] = "kjv"
    assert b.data.eval == {} and presets.resolve({"scale": "nano"}).data.eval == {}  # no shared mutable values


def test_identity_ignores_non_semantic_fields_and_sees_the_rest():
    base = resolve({"scale": "nano"}).config_hash()
    assert resolve({"scale": "nano", "train.log_every": 3, "data.cache_dir": "/x"}).config_hash() == base
    assert resolve({"scale": "nano", "train.lr": 1e-3}).config_hash() != base
    assert len({resolve({"scale": "nano", "seed": s}).config_hash() for s in range(50)}) == 50


def test_matrix_expansion_speed_is_reported(capsys):
    """Not a timed assert: the figure is printed (benchmarks/test_plan_speed.py measures 10^4 cells)."""
    import time

    m = Matrix("speed", "", {"scale": "nano"}, {"activation": ["swiglu", "gelu"], "seed": list(range(500))}, [])
    start = time.perf_counter()
    cells = expand(m)
    with capsys.disabled():
        print(f"\n  expanded {len(cells)} cells in {time.perf_counter() - start:.2f} s")
    assert len({c.id for c in cells}) == 1000


def test_axis_order_follows_the_expanded_matrix():
    cells = [Cell(f"c{i}", None, (("activation", a), ("norm", n)))
             for i, (a, n) in enumerate([("swiglu", "pre"), ("gelu", "pre"), ("swiglu", "post")])]
    assert axis_order(cells) == {"activation": ["swiglu", "gelu"], "norm": ["pre", "post"]}
