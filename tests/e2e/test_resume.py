"""Resume after kill -9, identity of cells, determinism: through the real CLI, in a subprocess where the process
matters (the kill, bitwise equality across interpreters), in-process elsewhere."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.max_steps", "20",
        "--train.val_every", "10", "--train.val_tokens", "4096", "--train.log_every", "1", "--ckpt-every", "5",
        "--quiet"]


def only_record(out: Path) -> tuple[Path, dict]:
    (path,) = out.glob("default/*/record.json")
    return path, json.loads(path.read_text())


def train_losses(cell: Path) -> dict[int, str]:
    import csv

    with open(cell / "metrics.csv") as f:
        return {int(r["step"]): r["train/loss"] for r in csv.DictReader(f) if r.get("train/loss")}


@pytest.mark.slow
def test_kill9_then_rerun_resumes_and_a_third_run_trains_nothing(tmp_path, bench_cli):
    out = tmp_path / "killed"
    # held mid-validation at step 10 (bench/faults.py), after the step-5 checkpoint: a kill during
    # training however fast the machine is
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *ARGS, "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "BENCH_PAUSE_AT": "validation"})
    assert any("PAUSED AT validation" in line for line in proc.stderr), "the run ended before validating"
    assert list(out.glob("default/*/checkpoints/latest.ckpt"))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    path, rec = only_record(out)
    assert rec["status"] == "running"  # the partial record is not read as complete

    done = bench_cli("run", *ARGS, "--out", str(out))
    assert done.returncode == 0, done.stderr
    _, rec = only_record(out)
    assert rec["status"] == "ok" and rec["resumed_from_step"] >= 5 and rec["metrics"]["steps"] == 20
    assert not (path.parent / "checkpoints").exists()  # removed once the cell is done

    # the curve covers both segments, each step once, and matches an uninterrupted run exactly
    straight = tmp_path / "straight"
    assert bench_cli("run", *ARGS, "--out", str(straight)).returncode == 0
    resumed, ref = train_losses(path.parent), train_losses(only_record(straight)[0].parent)
    assert sorted(resumed) == sorted(ref) == list(range(20))
    assert resumed == ref
    assert rec["metrics"]["val_loss"] == only_record(straight)[1]["metrics"]["val_loss"]

    t = time.perf_counter()
    again = bench_cli("run", *ARGS, "--out", str(out))
    assert again.returncode == 0 and "are done" in again.stdout
    assert only_record(out)[1]["ended"] == rec["ended"]  # nothing rewritten
    assert time.perf_counter() - t < 30  # imports included; the skip itself is far below 5 s


def test_changed_config_is_a_new_cell_and_nothing_is_overwritten(tmp_path, bench_cli):
    out = tmp_path / "r"
    args = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.max_steps", "4",
            "--train.val_every", "4", "--quiet", "--out", str(out)]
    assert bench_cli("run", *args).returncode == 0
    assert bench_cli("run", *args, "--train.lr", "1e-3").returncode == 0
    ids = sorted(p.parent.name for p in out.glob("default/*/record.json"))
    assert len(ids) == 2 and ids[0].rsplit("-", 1)[0] == ids[1].rsplit("-", 1)[0]  # same name, new hash
    # logging interval and cache folder are not part of a cell's identity
    assert bench_cli("run", *args, "--train.log_every", "2").stdout.count("are done") == 1


def test_same_config_and_seed_give_bitwise_identical_curves_on_cpu(tmp_path, bench_cli):
    args = ["--scale", "nano", "--activation", "polynorm", "--norm", "pre+gpas", "--train.max_steps", "12",
            "--train.val_every", "6", "--train.val_tokens", "4096", "--train.log_every", "1", "--quiet"]
    for name in ("a", "b"):
        assert bench_cli("run", *args, "--out", str(tmp_path / name), subprocess=True).returncode == 0
    (ra, a), (rb, b) = only_record(tmp_path / "a"), only_record(tmp_path / "b")
    assert train_losses(ra.parent) == train_losses(rb.parent)
    assert len(train_losses(ra.parent)) == 12
    for key in ("train_loss", "val_loss", "ood_loss"):
        assert a["metrics"][key] == b["metrics"][key]
    other = bench_cli("run", *args, "--seed", "1", "--out", str(tmp_path / "c"))
    assert other.returncode == 0
    assert train_losses(only_record(tmp_path / "c")[0].parent) != train_losses(ra.parent)
