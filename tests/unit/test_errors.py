"""Bad input: the whole matrix is validated before anything trains; each error is one clear line."""

import re

import pytest



CASES = {
    "unknown activation": (["--activation", "swiglu,swigluu"],
                           ["unknown activation 'swigluu'", "Did you mean 'swiglu'?", "polynorm"]),
    "unknown scheme": (["--norm", "pre,sandwhich+gpas"], ["unknown norm scheme", "Did you mean 'sandwich+gpas'?"]),
    "unknown scale": (["--scale", "nanoo"], ["unknown scale 'nanoo'", "Did you mean 'nano'?", "gpas-71m"]),
    "unknown override value": (["--model.norm_layer", "batchnorm"], ["unknown norm layer", "rmsnorm, layernorm"]),
    "invalid combination": (["--norm", "deepnorm+gpas", "--model.gpas_position", "after_norm"],
                            ["applies to pre-style schemes only"]),
    "heads not dividing width": (["--model.n_heads", "3"], ["n_heads=3 does not divide d_model=40"]),
    "odd head dim": (["--model.d_model", "36", "--model.n_heads", "4"], ["must be even for RoPE"]),
    "kv heads": (["--model.n_kv_heads", "3"], ["n_kv_heads=3 does not divide n_heads=4"]),
    "missing corpus": (["--data.corpus", "/no/such/corpus.jsonl"], ["corpus path not found: /no/such/corpus.jsonl"]),
    "missing ood corpus": (["--data.ood_corpus", "/no/such/dir"], ["corpus path not found: /no/such/dir"]),
    "missing tokenizer": (["--data.tokenizer", "/no/tok.json"], ["tokenizer file not found"]),
    "bad precision": (["--train.precision", "bf15-mixed"], ["unknown precision", "bf16-mixed"]),
    "bad number": (["--train.lr", "fast"], ["train.lr: cannot read 'fast' as float"]),
    "non-positive steps": (["--train.max_steps", "0"], ["train.max_steps must be a positive integer"]),
    "bad seed": (["--seed", "one"], ["--seed takes comma-separated integers"]),
    "poly order": (["--activation", "polyrelu", "--model.poly_order", "7"], ["poly_order must be 2, 3 or 4"]),
    "powlu m": (["--activation", "powlu", "--model.powlu_m", "12"], ["powlu_m must lie in (0, 10)"]),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("command", ["plan", "run"])
def test_bad_input_is_one_clear_line(name, command, bench_cli, one_line_error, tmp_path):
    argv, needles = CASES[name]
    extra = ["--out", str(tmp_path / "out"), "--quiet"] if command == "run" else []
    scale = ["--scale", "nano"] if "--scale" not in argv else []
    one_line_error(bench_cli(command, *scale, *argv, *extra), *needles)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def write(tmp_path, text):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return str(p)


def test_malformed_yaml_names_file_and_line(bench_cli, one_line_error, tmp_path):
    path = write(tmp_path, "axes:\n  activation: [swiglu, gelu\n  norm: [pre]\n")
    one_line_error(bench_cli("run", path, "--out", str(tmp_path / "o")), "malformed YAML", f"{path}:")
    assert not (tmp_path / "o").exists()


def test_a_bad_cell_anywhere_stops_the_matrix_before_training(bench_cli, one_line_error, tmp_path):
    path = write(tmp_path, "axes:\n  scale: [nano]\n  activation: [swiglu, gelu]\n"
                           "  norm: [pre, lns+gpas, bogus]\n")
    one_line_error(bench_cli("run", path, "--out", str(tmp_path / "o")), "unknown norm scheme 'bogus'")
    assert not (tmp_path / "o").exists()


def test_unknown_matrix_key_and_axis(bench_cli, tmp_path):
    r = bench_cli("plan", write(tmp_path, "axis:\n  scale: [nano]\n"))
    code, err = r.returncode, r.stderr.strip()
    assert code == 2 and "Did you mean 'axes'?" in err
    r = bench_cli("plan", write(tmp_path, "axes:\n  model.activaton: [swiglu]\n"))
    code, err = r.returncode, r.stderr.strip()
    assert code == 2 and "Did you mean 'model.activation'?" in err


def test_missing_matrix_file(bench_cli, one_line_error, tmp_path):
    one_line_error(bench_cli("plan", str(tmp_path / "nope.yaml")), "matrix file not found")
    r = bench_cli("plan", "defualt")
    code, err = r.returncode, r.stderr.strip()
    assert code == 2 and "Did you mean 'default'?" in err


RUN_CASES = {
    "out is a file": (["--out", "{file}"], ["is a file, not a folder"]),
    "out under a file": (["--out", "{file}/sub"], ["is a file, not a folder"]),
    "out is a file, workers": (["--out", "{file}", "--workers", "2"], ["is a file, not a folder"]),
    "name with a slash": (["--out", "{dir}", "--name", "a/b"], ["--name takes a folder name"]),
    "name dot dot": (["--out", "{dir}", "--name", ".."], ["--name takes a folder name"]),
    "workers not a count": (["--out", "{dir}", "--workers", "two"], ["--workers takes a positive integer or 'auto'"]),
    "workers zero": (["--out", "{dir}", "--workers", "0"], ["--workers takes a positive integer or 'auto'"]),
    "no device per cell": (["--out", "{dir}", "--devices-per-cell", "0"], ["--devices-per-cell must be at least 1"]),
    "slurm and workers": (["--out", "{dir}", "--slurm", "--workers", "2"], ["choose one"]),
    "a SLURM resource without --slurm": (["--out", "{dir}", "--time", "5"], ["--time is a SLURM resource",
                                                                             "add --slurm"]),
}


@pytest.mark.parametrize("name", RUN_CASES)
@pytest.mark.parametrize("command", ["run", "sweep", "ladder"])
def test_bad_run_option_is_one_clear_line(name, command, bench_cli, one_line_error, tmp_path):
    """Every command that trains takes the same run and launch options, checked alike."""
    argv, needles = RUN_CASES[name]
    (tmp_path / "file").write_text("x")
    argv = [a.format(file=tmp_path / "file", dir=tmp_path / "out") for a in argv]
    one_line_error(bench_cli(command, "--scale", "nano", "--activation", "swiglu", "--norm", "pre", *argv), *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written


# ---- names stay inside --out ---------------------------------------------------------------------

HOSTILE_NAMES = {
    "dot dot": "..", "dot": ".", "parent": "../escaped", "absolute": "{abs}/escaped", "up and up": "a/b/../../..",
    "backslash": "a\\b", "nul": "x\x00y", "long": "x" * 300, "long utf-8": "é" * 150, "blank": "   ",
    "tab": "a\tb", "newline": "a\nb",
}


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("how", ["matrix name", "--name"])
@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_a_hostile_results_name_writes_nothing_outside_out(bench_cli, one_line_error, tmp_path, hostile, how):
    """A matrix file from a colleague, or a --name, cannot make `bench run` (or any command that names
    a results folder) write outside --out: one line naming the rule, exit 2, nothing written."""
    import json

    name = HOSTILE_NAMES[hostile].format(abs=tmp_path / "abs")
    (tmp_path / "abs").mkdir()
    fixed = "fixed: {train.max_steps: 1, train.val_every: 1, train.val_tokens: 512, train.probe_every: 0}\n"
    axes = "axes: {scale: [nano], activation: [swiglu], norm: [pre], seed: [0]}\n"
    matrix = tmp_path / "mat" / "m.yaml"
    matrix.parent.mkdir()
    matrix.write_text((f"name: {json.dumps(name)}\n" if how == "matrix name" else "") + fixed + axes)
    extra = ["--name", name] if how == "--name" else []
    before = tree(tmp_path)
    commands = [["run", str(matrix), "--out", str(tmp_path / "out"), "--quiet", *extra],
                ["sweep", str(matrix), "--lr-grid", "1e-3,2e-3", "--out", str(tmp_path / "out"), "--quiet", *extra],
                ["status", str(matrix), "--out", str(tmp_path / "out"), *extra]]
    if how == "matrix name":
        commands.append(["table", str(matrix), "--out", str(tmp_path / "out")])
    for argv in commands:
        one_line_error(bench_cli(*argv), "takes a folder name")
        assert tree(tmp_path) == before, argv  # nothing written, inside --out or out of it


# ---- bounded YAML ----------------------------------------------------------------------------------

def alias_bomb(levels: int) -> str:
    """A 'billion laughs' as one YAML flow value: each level a list of 9 aliases of the one before."""
    items = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def run_limited(*argv, timeout=120):
    """`bench` in a subprocess with 4 GiB of address space: a blow-up fails there, not on the machine."""
    import os
    import resource
    import subprocess
    import sys
    from pathlib import Path

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "bench.cli", *argv], cwd=root, capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=limit)


@pytest.mark.parametrize("where", ["matrix", "--config", "axis value"])
@pytest.mark.parametrize("levels", [5, 9])
def test_a_yaml_alias_bomb_fails_at_once_in_one_short_line(tmp_path, where, levels):
    bomb = alias_bomb(levels)
    if where == "matrix":  # where a string belongs: the error quotes it
        (tmp_path / "m.yaml").write_text(f"description: {bomb}\naxes: {{scale: [nano]}}\n")
        argv = ["plan", str(tmp_path / "m.yaml")]
    elif where == "--config":
        (tmp_path / "c.yaml").write_text(f"train:\n  lr: {bomb}\n")
        argv = ["plan", "--scale", "nano", "--config", str(tmp_path / "c.yaml")]
    else:  # a value the matrix hands on to the config's parser
        (tmp_path / "m.yaml").write_text(f"fixed: {{train.lr: {bomb}}}\naxes: {{scale: [nano]}}\n")
        argv = ["plan", str(tmp_path / "m.yaml")]
    r = run_limited(*argv)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    (line,) = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert line.startswith("error:") and len(line) < 400, line[:1000]


def test_an_oversized_matrix_file_is_one_line(bench_cli, one_line_error, tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("axes: {scale: [nano]}\n" + "# padding\n" * 200_000)
    one_line_error(bench_cli("plan", str(path)), "bytes, more than")


@pytest.mark.parametrize("yaml_text", [
    "axes: {scale: ['" + "n" * 100_000 + "']}\n",  # an unknown name, 100 KB long
    "axes: {scale: [nano]}\nfixed: {train.lr: [" + ", ".join(["[1, 2, 3]"] * 3000) + "]}\n",  # a huge wrong value
    "axes:\n  scale: [nano]\n  ? '" + "k" * 100_000 + "'\n  : [1]\n",  # a huge axis name (an explicit key)
    "axes: {scale: " + "[" * 50 + "nano" + "]" * 50 + "}\n",  # deeply nested
], ids=["long name", "huge value", "huge key", "nested"])
def test_every_value_an_error_quotes_is_cut_short(bench_cli, tmp_path, yaml_text):
    path = tmp_path / "m.yaml"
    path.write_text(yaml_text)
    r = bench_cli("plan", str(path))
    code, err = r.returncode, r.stderr.strip()
    assert code == 2 and "Traceback" not in err
    # one line, the value quoted short (the valid choices it names may run long)
    assert len(err.splitlines()) == 1 and len(err) < 4000, err[:2000]
    assert not re.search(r"(.)\1{99}", err) and "[1, 2, 3], " * 20 not in err, err[:2000]


@pytest.mark.parametrize("command", ["table", "report"])
def test_a_file_named_as_results_is_one_line_not_a_matrix(bench_cli, one_line_error, tmp_path, monkeypatch, command):
    """`bench table afile` once read the file as a matrix YAML and complained about its content."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("hello\n")
    one_line_error(bench_cli(command, "afile"), "afile is a file, not a results folder")
