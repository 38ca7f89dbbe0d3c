"""Never lose a cell: one test per defect. Kills and signals are real (subprocess +
os.kill); the fault-injection points of bench/faults.py hold a run at a phase until it is killed."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.run.engine.claims import acquire, holder
from bench.results.curves import merge_curves
from bench.results.records import load_records, read_record
from bench.run.engine.checkpoints import LATEST, PREVIOUS, AtomicCheckpointIO, find_resume

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6
ARGS = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.probe_every", "0",
        "--train.max_steps", str(STEPS), "--train.val_every", "3", "--train.log_every", "1",
        "--train.throughput_warmup", "1", "--train.val_tokens", "4096", "--quiet"]
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}


def start(*args, env=None, stdout=subprocess.DEVNULL):
    return subprocess.Popen([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, stdout=stdout,
                            stderr=subprocess.PIPE, text=True, env={**ENV, **(env or {})})


def wait_paused(proc, point: str):
    """Read stderr until the run announces it is held at ``point``."""
    for line in proc.stderr:
        if f"PAUSED AT {point}" in line:
            return
    raise AssertionError(f"the run ended (rc {proc.wait()}) before reaching {point}")


def cell(out: Path) -> Path:
    (path,) = Path(out).glob("default/*/record.json")
    return path.parent


def record(out: Path) -> dict:
    return json.loads((cell(out) / "record.json").read_text())


def curve_bytes(folder: Path) -> bytes:
    """metrics.csv as bytes, the wall-clock column (time/train_seconds, a measurement) blanked: every
    other byte, column order and row layout included, must match an uninterrupted run's."""
    text = (folder / "metrics.csv").read_bytes()
    header, *rows = text.split(b"\r\n")
    cols = header.split(b",")
    assert b"time/train_seconds" in cols  # the equal-time view's column is there, only its values differ
    i = cols.index(b"time/train_seconds")
    blank = [b",".join(v if j != i else (b"t" if v else b"") for j, v in enumerate(r.split(b","))) for r in rows]
    return b"\r\n".join([header, *blank])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, bench_cli):
    """One uninterrupted run: the reference every resumed run must match byte for byte."""
    out = tmp_path_factory.mktemp("straight")
    r = bench_cli("run", *ARGS, "--out", str(out), "--ckpt-every", "3")
    assert r.returncode == 0, r.stderr
    return out


# ---- 1 + 9: kills at every phase: tests/e2e/test_kill_anywhere.py (a fork per kill, every fault point)

def test_merge_curves_orders_columns_as_lightning_does(tmp_path):
    (tmp_path / "metrics.part-001.csv").write_bytes(b"step,train/loss,epoch\r\n0,5.0,0\r\n1,4.0,0\r\n")
    (tmp_path / "metrics.csv").write_bytes(b"epoch,step,train/loss,val/loss\r\n0,1,4.0,\r\n0,1,,3.5\r\n")
    merge_curves(tmp_path)
    assert (tmp_path / "metrics.csv").read_bytes() == \
        b"epoch,step,train/loss,val/loss\r\n0,0,5.0,\r\n0,1,4.0,\r\n0,1,,3.5\r\n"


# ---- 2: atomic checkpoints, damaged ones set aside ------------------------------------------------

def test_checkpoint_write_failing_with_enospc_leaves_the_last_good_one(tmp_path, monkeypatch):
    io_ = AtomicCheckpointIO()
    path = tmp_path / LATEST
    io_.save_checkpoint({"step": 1}, path)
    good = path.read_bytes()
    import torch

    def full_disk(obj, f, *a, **k):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        io_.save_checkpoint({"step": 2}, path)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == [LATEST]
    monkeypatch.undo()
    io_.save_checkpoint({"step": 3}, path)  # the previous good one is kept beside the new one
    assert (tmp_path / PREVIOUS).read_bytes() == good


def test_truncated_latest_is_set_aside_and_previous_used(tmp_path):
    io_ = AtomicCheckpointIO()  # the smallest checkpoints find_resume accepts: ones Lightning can resume from
    io_.save_checkpoint({"state_dict": {}, "global_step": 1}, tmp_path / LATEST)
    io_.save_checkpoint({"state_dict": {}, "global_step": 2}, tmp_path / LATEST)
    data = (tmp_path / LATEST).read_bytes()
    (tmp_path / LATEST).write_bytes(data[: len(data) // 2])
    warnings = []
    assert find_resume(tmp_path, warnings.append) == tmp_path / PREVIOUS
    assert len(warnings) == 1 and "damaged" in warnings[0] and (tmp_path / (LATEST + ".damaged")).exists()
    (tmp_path / PREVIOUS).write_bytes(b"garbage")
    assert find_resume(tmp_path, warnings.append) is None and len(warnings) == 2  # from scratch, never stuck


def test_rerun_over_a_truncated_checkpoint_trains_the_cell(tmp_path, straight, bench_cli):
    out = tmp_path / "out"
    ckpts = out / "default" / cell(straight).name / "checkpoints"
    ckpts.mkdir(parents=True)
    (ckpts / LATEST).write_bytes(b"PK\x03\x04 truncated by a full disk")
    r = bench_cli("run", *ARGS, "--out", str(out), "--ckpt-every", "3")
    assert r.returncode == 0, r.stderr
    assert "damaged checkpoint" in r.stdout + r.stderr and record(out)["status"] == "ok"


def test_full_disk_during_training_is_one_line_and_keeps_the_original_error(tmp_path, monkeypatch, tiny_dm):
    from bench.errors import ConfigError
    from bench.run.engine import checkpoints, runner
    from bench.run.config.options import RunOptions
    from tiny_data import nano_cell

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", "latest.ckpt")

    monkeypatch.setattr(checkpoints.AtomicCheckpointIO, "save_checkpoint", full)
    with pytest.raises(ConfigError, match="disk full"):
        runner.train_cell(nano_cell(), "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=2))
    (rec_path,) = tmp_path.glob("t/*/record.json")
    assert json.loads(rec_path.read_text())["status"] == "failed"
    # the final record cannot be written either: the error raised is still the checkpoint's
    real, calls = runner.write_json, []

    def write_once(*a, **k):
        calls.append(a[0])
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(a[0]))
        real(*a, **k)

    monkeypatch.setattr(runner, "write_json", write_once)
    with pytest.raises(ConfigError, match="latest.ckpt"):
        runner.train_cell(nano_cell(), "t", tiny_dm, RunOptions(out=tmp_path / "b", quiet=True, ckpt_every=2))


# ---- 3: claims ----------------------------------------------------------------------------------

def test_claim_is_exclusive_refreshed_and_taken_over_when_its_holder_died(tmp_path):
    with acquire(tmp_path, beat=0.1):
        assert acquire(tmp_path) is None
        first = holder(tmp_path).heartbeat
        time.sleep(0.4)
        assert holder(tmp_path).heartbeat > first and holder(tmp_path).pid == os.getpid()
    assert holder(tmp_path) is None  # released
    dead = subprocess.run([sys.executable, "-c", "import os, sys; from bench.run.engine.claims import acquire; "
                           "acquire(sys.argv[1]); os._exit(0)", str(tmp_path)], cwd=ROOT)
    assert dead.returncode == 0 and holder(tmp_path) is not None
    messages = []
    taken = acquire(tmp_path, log=messages.append)  # same host, dead pid: stale at once
    assert taken is not None and "taking over" in messages[0]
    taken.release()
    with acquire(tmp_path, stale_after=3 * 3600, beat=3600) as old:  # another host's claim goes stale by its heartbeat
        data = json.loads(old.path.read_text())
        old.path.write_text(json.dumps({**data, "host": "elsewhere"}))
        os.utime(old.path, (time.time() - 200, time.time() - 200))  # the heartbeat is the file's mtime
        assert acquire(tmp_path, stale_after=3600) is None
        new = acquire(tmp_path, stale_after=100, log=messages.append)
        assert new is not None and not old.refresh() and old.lost
        new.release()


def test_two_runs_on_one_matrix_train_each_cell_once(tmp_path):
    out = tmp_path / "out"
    args = [*ARGS, "--activation", "swiglu,gelu", "--out", str(out), "--ckpt-every", "0"]
    procs = [start("run", *args, stdout=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    text = "".join(o + e for o, e in outs)
    records, problems = load_records(out / "default")
    assert len(records) == 2 and not problems and all(r.status == "ok" for r in records)
    assert text.count("skipped") + text.count("are done") >= 1  # the second run did not train them again
    for r in records:
        with open(r.path.parent / "metrics.csv") as f:
            rows = [tuple(row.values()) for row in csv.DictReader(f)]
        assert len(rows) == len(set(rows))  # no doubled rows
        assert not (r.path.parent / "claim.json").exists()  # released


# ---- 4: signals ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_at_a_step_saves_and_records_interrupted(tmp_path, straight, sig, code, bench_cli):
    out = tmp_path / "out"
    proc = start("run", *ARGS, "--out", str(out), "--ckpt-every", "3",
                 env={"BENCH_PAUSE_AT": "train", "BENCH_PAUSE_SECONDS": "2"})
    wait_paused(proc, "train")
    os.kill(proc.pid, sig)
    err = proc.stderr.read()
    assert proc.wait() == code
    rec = record(out)
    assert rec["status"] == "interrupted" and rec["checkpoint_step"] is not None
    assert "Traceback" not in err and sum("interrupted by" in line for line in err.splitlines()) == 1
    assert (cell(out) / "checkpoints" / LATEST).exists()
    done = bench_cli("run", *ARGS, "--out", str(out), "--ckpt-every", "3")
    assert done.returncode == 0, done.stderr
    assert record(out)["status"] == "ok"
    assert curve_bytes(cell(out)) == curve_bytes(cell(straight))


# ---- 5, 6, 8: user-fixable conditions are one line, exit 2; the record tells what ran ------------

def test_missing_gpu_is_one_line_before_anything_runs(tmp_path, bench_cli, one_line_error):
    r = bench_cli("run", *ARGS, "--out", str(tmp_path), "--train.accelerator", "gpu")
    assert "gpu" in one_line_error(r)
    assert not list(tmp_path.glob("**/record.json"))  # no record left `running`


def test_16_mixed_on_cpu_records_the_precision_that_ran(tmp_path, tiny_dm):
    from bench.run.config.options import RunOptions
    from bench.run.engine.runner import train_cell
    from tiny_data import nano_cell

    rec = train_cell(nano_cell(**{"train.precision": "16-mixed", "train.max_steps": 2}), "t", tiny_dm,
                     RunOptions(out=tmp_path, quiet=True))
    assert rec.status == "ok" and rec.precision == "bf16-mixed" and rec.device == "cpu"
    assert rec.config["train"]["precision"] == "16-mixed"  # the identity keeps what was asked


@pytest.mark.parametrize("content", [b"", os.urandom(4096) + b"\xff\xfe", b"hi\n"], ids=["empty", "random", "short"])
def test_bad_corpus_is_one_line(tmp_path, content, bench_cli, one_line_error):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    r = bench_cli("run", *ARGS, "--out", str(tmp_path / "out"), "--data.corpus", str(corpus))
    assert "corpus" in one_line_error(r)


def test_out_naming_a_file_is_one_line(tmp_path, bench_cli, one_line_error):
    (tmp_path / "f").write_text("")
    assert "is a file" in one_line_error(bench_cli("run", *ARGS, "--out", str(tmp_path / "f")))


def _mount_tmpfs(path: Path, opts: str):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")


def test_read_only_out_is_one_line(tmp_path, bench_cli, one_line_error):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=1m")
    try:
        assert "not writable" in one_line_error(bench_cli("run", *ARGS, "--out", str(ro)))
    finally:
        subprocess.run(["umount", str(ro)])


def test_full_disk_is_one_line_and_the_cell_resumes_once_space_is_freed(tmp_path, straight, bench_cli, one_line_error):
    small = tmp_path / "small"
    _mount_tmpfs(small, "size=600k")  # room for the record and curve, not for a checkpoint
    try:
        r = bench_cli("run", *ARGS, "--out", str(small), "--ckpt-every", "3")
        assert "disk full" in one_line_error(r)
    finally:
        subprocess.run(["umount", str(small)])


# ---- 7: damaged results are reported, never dropped or crashed on --------------------------------

def test_damaged_records_are_reported_and_the_leaderboard_keeps_its_rows(tmp_path, bench_cli):
    from unit.results.support import write_matrix

    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    assert bench_cli("table", str(folder)).returncode == 0
    before = (folder / "leaderboard.csv").read_text()
    cells = sorted(p for p in folder.iterdir() if p.is_dir())
    (cells[0] / "record.json").write_text('{"status": "ok"}')  # missing fields
    (cells[1] / "record.json").write_text('{"id": "x", ')  # cut by a kill
    (cells[2] / "metrics.csv").write_bytes(b"\x00\xffgarbage,\n1,2,3,4,5\nstep\n")  # garbled curve
    for cmd in (["table", str(folder)], ["table", str(folder), "--target-loss", "3"], ["report", str(folder)]):
        r = bench_cli(*cmd)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        named = [ln for ln in r.stderr.splitlines() if "skipped record" in ln]
        assert len(named) == 2 and "missing field" in named[0] + named[1] and "JSON" in named[0] + named[1]
    assert (folder / "leaderboard.csv").read_text() == before  # not replaced by a shorter table
    assert (folder / "leaderboard.new.csv").exists()
    assert read_record(cells[0] / "record.json")[1].startswith("missing field")


def test_rerun_says_why_it_retrains_an_unreadable_record(tmp_path):
    from bench.run.config.presets import resolve
    from bench.run.config.matrix import Cell, cell_id
    from bench.run.engine.cell import done_record as _done_record
    from bench.run.config.options import RunOptions

    cfg = resolve({"scale": "nano"})
    c = Cell(cell_id(cfg, {}), cfg, ())
    d = tmp_path / "m" / c.id
    d.mkdir(parents=True)
    (d / "record.json").write_text('{"status": "ok"}')
    rec, why = _done_record(RunOptions(out=tmp_path), "m", c)
    assert rec is None and "missing field" in why


def test_record_is_typed_validated_and_keeps_unknown_fields():
    from bench.results.records import Record, RecordError

    d = {"id": "c", "status": "ok", "scale": "nano", "activation": "swiglu", "norm": "pre", "seed": 0,
         "params": {"total": 10, "non_embedding": 5}, "later_field": {"experts": 8},
         "metrics": {"val_loss": 2.0, "val_code_loss": 2.5, "mfu_basis": "cpu"}}
    r = Record.from_dict(d)
    assert (r.metrics.val_loss == 2.0 and r.metrics.get("val_code_loss") == 2.5
            and r.extra["later_field"] == {"experts": 8})
    assert Record.from_dict(r.to_dict()) == r  # round trip: later fields survive a rewrite
    for bad, why in (({**d, "seed": "0"}, "seed"), ({**d, "metrics": {"val_loss": "x"}}, "metrics.val_loss"),
                     ({**d, "status": "done"}, "status"), ({**d, "metrics": {}}, "no val_loss")):
        with pytest.raises(RecordError, match=why):
            Record.from_dict(bad)
