"""Bad input: the whole matrix is validated before anything trains; each error is one clear line."""

import pytest

from bench import cli


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.strip()


def assert_one_line(err: str, *needles: str):
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, (n, err)


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
def test_bad_input_is_one_clear_line(name, command, capsys, tmp_path):
    argv, needles = CASES[name]
    extra = ["--out", str(tmp_path / "out"), "--quiet"] if command == "run" else []
    code, err = run_cli(capsys, command, "--scale", "nano", *argv, *extra) if "--scale" not in argv else \
        run_cli(capsys, command, *argv, *extra)
    assert code == 2
    assert_one_line(err, *needles)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written


def write(tmp_path, text):
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return str(p)


def test_malformed_yaml_names_file_and_line(capsys, tmp_path):
    path = write(tmp_path, "axes:\n  activation: [swiglu, gelu\n  norm: [pre]\n")
    code, err = run_cli(capsys, "run", path, "--out", str(tmp_path / "o"))
    assert code == 2
    assert_one_line(err, "malformed YAML", f"{path}:")
    assert not (tmp_path / "o").exists()


def test_a_bad_cell_anywhere_stops_the_matrix_before_training(capsys, tmp_path):
    path = write(tmp_path, "axes:\n  scale: [nano]\n  activation: [swiglu, gelu]\n"
                           "  norm: [pre, lns+gpas, bogus]\n")
    code, err = run_cli(capsys, "run", path, "--out", str(tmp_path / "o"))
    assert code == 2
    assert_one_line(err, "unknown norm scheme 'bogus'")
    assert not (tmp_path / "o").exists()


def test_unknown_matrix_key_and_axis(capsys, tmp_path):
    code, err = run_cli(capsys, "plan", write(tmp_path, "axis:\n  scale: [nano]\n"))
    assert code == 2 and "Did you mean 'axes'?" in err
    code, err = run_cli(capsys, "plan", write(tmp_path, "axes:\n  model.activaton: [swiglu]\n"))
    assert code == 2 and "Did you mean 'model.activation'?" in err


def test_missing_matrix_file(capsys, tmp_path):
    code, err = run_cli(capsys, "plan", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert_one_line(err, "matrix file not found")
    code, err = run_cli(capsys, "plan", "defualt")
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
def test_bad_run_option_is_one_clear_line(name, command, capsys, tmp_path):
    """Every command that trains takes the same run and launch options, checked alike."""
    argv, needles = RUN_CASES[name]
    (tmp_path / "file").write_text("x")
    argv = [a.format(file=tmp_path / "file", dir=tmp_path / "out") for a in argv]
    code, err = run_cli(capsys, command, "--scale", "nano", "--activation", "swiglu", "--norm", "pre", *argv)
    assert code == 2
    assert_one_line(err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written
