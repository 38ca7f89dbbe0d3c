"""What the user is told, each case once wrong: a read-only or full results folder under `bench table`
and `bench report`, a signal after the last step, a bad --stale-after under --workers, a negative
seed, a throughput never measured, a garbled curve, rows planted out of order in a curve."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
NANO = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.probe_every", "0",
        "--train.max_steps", "4", "--train.val_every", "2", "--train.val_tokens", "1024", "--quiet"]


def mount_tmpfs(path: Path, opts: str) -> None:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")


@pytest.mark.parametrize("state", ["read-only", "full"])
def test_table_and_report_on_a_read_only_or_full_results_folder_say_so_in_one_line(tmp_path, bench_cli, state):
    """They printed the table, then a traceback (OSError on the temp file)."""
    from unit.results.support import write_matrix

    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=2m")
    try:
        folder, _ = write_matrix(disk, with_probes=False, scales=("nano",), seeds=(0,))
        if state == "read-only":
            subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        else:
            fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, b"\0" * 4096)
            except OSError:
                pass
            finally:
                os.close(fd)
        for fmt in ("rich", "md", "csv", "latex"):
            code, out, err = bench_cli("table", folder, "--format", fmt)
            assert code == 0 and "swiglu" in out, err  # the table, printed
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert len(lines) == 1 and "could not save leaderboard" in lines[0] and "Traceback" not in err, err
        code, out, err = bench_cli("report", folder)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and "cannot write the report" in lines[0], err
        assert "--out FILE" in lines[0]
    finally:
        subprocess.run(["umount", "-l", str(disk)])


@pytest.mark.slow  # trains a nano cell
def test_a_signal_after_the_last_step_does_not_ask_to_resume_a_finished_cell(tmp_path):
    """SIGTERM while the last cell writes its record: the record is ok and nothing is left, so the
    run says so and exits 0 instead of 'rerun the same command to resume'."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *NANO, "--out", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**ENV, "BENCH_PAUSE_AT": "record", "BENCH_PAUSE_SECONDS": "3"})
    for line in proc.stderr:
        if "PAUSED AT record" in line:
            break
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    (record,) = tmp_path.glob("default/*/record.json")
    assert json.loads(record.read_text())["status"] == "ok"
    assert proc.returncode == 0, err
    assert "nothing to resume" in out + err and "rerun" not in out + err


def test_a_bad_stale_after_under_workers_is_one_line_from_the_parent(tmp_path, bench_cli):
    """It failed in every worker with rc 1 and 'rerun', and the rerun failed the same way."""
    code, out, err = bench_cli("run", *NANO, "--out", tmp_path, "--workers", "2", "--stale-after", "5")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--stale-after 5 is too short" in err
    assert not list(tmp_path.rglob(".workers"))  # no worker started


@pytest.mark.parametrize("command", ["plan", "run"])
@pytest.mark.parametrize("how", ["--seed", "matrix"])
def test_a_negative_seed_is_one_line_naming_the_seed(tmp_path, bench_cli, command, how):
    """`bench plan --seed=-1` planned, then `bench run` blamed the corpus."""
    if how == "--seed":
        argv = [command, *NANO[:6], "--seed=-1"]
    else:
        (tmp_path / "m.yaml").write_text("axes: {scale: [nano], seed: [0, -1]}\n")
        argv = [command, tmp_path / "m.yaml"]
    if command == "run":
        argv += ["--out", tmp_path / "out"]
    code, out, err = bench_cli(*argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "seed must lie in [0, 4294967295]" in err, err
    assert "corpus" not in err and not (tmp_path / "out").exists()


def test_the_summary_never_prints_a_throughput_that_was_not_measured():
    """A cell too short for its warm-up printed '0 tok/s'."""
    import io

    from rich.console import Console

    from bench.results.records import Record
    from bench.run.engine.cell import summary

    rec = Record.from_dict({"id": "c", "status": "ok", "scale": "nano", "activation": "swiglu", "norm": "pre",
                            "seed": 0, "metrics": {"val_loss": 1.0, "val_ppl": 2.72}})
    shown = io.StringIO()
    summary(rec, Console(file=shown, width=200))
    assert "0 tok/s" not in shown.getvalue() and "tok/s not measured" in shown.getvalue()
    rec.metrics.tokens_per_sec = 1234.5
    shown = io.StringIO()
    summary(rec, Console(file=shown, width=200))
    assert "1,234 tok/s" in shown.getvalue() or "1,235 tok/s" in shown.getvalue()


def test_a_garbled_curve_reads_as_unreadable_not_as_not_reached(tmp_path, bench_cli):
    from unit.results.support import write_matrix

    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    cells = sorted(p.parent for p in folder.glob("*/record.json"))
    (cells[0] / "metrics.csv").write_text("garbage,here\n1,2\nx,y\n")  # reads as CSV, holds no curve
    (cells[1] / "metrics.csv").unlink()
    code, out, err = bench_cli("table", folder, "--format", "md", "--target-loss", "0.001")
    assert code == 0, err
    row = {line.split("|")[2].strip(): line for line in out.splitlines() if "-abc123 |" in line}
    assert "curve unreadable" in row[cells[0].name] and "not reached" not in row[cells[0].name]
    assert "no curve" in row[cells[1].name]
    assert "not reached" in row[cells[2].name]  # a real curve that never got there


def test_rows_planted_out_of_order_do_not_survive_a_resumes_rewrite(tmp_path):
    from bench.run.engine.curve_log import read_rows, start_curve

    header = "epoch,step,train/loss,val/loss\r\n"
    rows = ["0,0,5.0,\r\n", "0,1,4.0,\r\n", "0,1,,3.9\r\n", "0,7,1.0,\r\n",  # a row from the future
            "0,2,3.5,\r\n", "0,1,4.5,\r\n",  # step 1's train row again, later in the file
            "0,0,5.5,\r\n", "0,3,3.0,\r\n"]
    (tmp_path / "metrics.csv").write_text(header + "".join(rows))
    start_curve(tmp_path, 4)  # resuming from a checkpoint at step 4
    kept, _ = read_rows(tmp_path / "metrics.csv")
    steps = [int(r["step"]) for r in kept]
    assert steps == sorted(steps) and max(steps) < 4
    signatures = [(r["step"], tuple(k for k, v in sorted(r.items()) if v)) for r in kept]
    assert len(signatures) == len(set(signatures))  # each step's train and validation row once
    assert [(r["step"], r["train/loss"], r["val/loss"]) for r in kept] == [
        ("0", "5.0", ""), ("1", "4.0", ""), ("1", "", "3.9"), ("2", "3.5", ""), ("3", "3.0", "")]
