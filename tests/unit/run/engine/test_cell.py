"""A cell's lifecycle beyond kills: checkpoints that cannot be loaded, full disks, claims, the
train clock and what it holds out, and what the record says about sharing and axis order."""

import argparse
import errno
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from bench.errors import ConfigError
from bench.run.engine import checkpoints
from bench.run.engine.checkpoints import LATEST, PREVIOUS, AtomicCheckpointIO, find_resume
from bench.run.engine.claims import BEAT, CLAIM, acquire, check_stale_after, identity, start_time
from bench.run.config.options import RunOptions
from bench.run.engine.runner import train_cell
from tiny_data import nano_cell


SHORT = {"train.max_steps": 6, "train.val_every": 3, "train.throughput_warmup": 1, "data.ood_corpus": None,
         "train.probe_every": 0}


# ---- checkpoints -------------------------------------------------------------------------------

class Unloadable:
    """Pickles fine, cannot be unpickled: its class is gone when the checkpoint is read."""


def test_a_checkpoint_that_passes_its_crc_but_cannot_be_unpickled_is_set_aside(tmp_path, monkeypatch):
    io_ = AtomicCheckpointIO()
    io_.save_checkpoint({"state_dict": {}, "global_step": 1}, tmp_path / LATEST)
    io_.save_checkpoint({"state_dict": {}, "global_step": 2, "x": Unloadable()}, tmp_path / LATEST)
    monkeypatch.delattr(sys.modules[__name__], "Unloadable")
    assert checkpoints.damage(tmp_path / PREVIOUS) is None
    warnings = []
    assert find_resume(tmp_path, warnings.append) == tmp_path / PREVIOUS
    assert len(warnings) == 1 and "cannot be loaded" in warnings[0]
    assert (tmp_path / (LATEST + ".damaged")).exists()


def test_a_full_disk_inside_torch_save_is_raised_as_the_oserror_it_is(tmp_path, monkeypatch):
    """torch.save turns a failed write into RuntimeError('unexpected pos'); the cause must survive."""
    real_open = open
    path = tmp_path / LATEST

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += len(b)
            if self.n > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

    def small_disk(p, mode="r", *a, **k):
        f = real_open(p, mode, *a, **k)
        return Full(f) if "w" in mode and str(p).startswith(str(tmp_path)) else f

    monkeypatch.setattr("builtins.open", small_disk)
    with pytest.raises(OSError) as e:
        AtomicCheckpointIO().save_checkpoint({"w": torch.randn(10_000)}, path)
    assert e.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())  # no temp file left behind


def test_checkpoint_temp_names_are_unique_per_writer(tmp_path, monkeypatch):
    seen = []
    real = torch.save

    def spy(obj, f, *a, **k):
        seen.append(Path(f.f.name).name)
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", spy)
    for step in range(2):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "global_step": step}, tmp_path / LATEST)
    assert len(set(seen)) == 2 and all(n.startswith(f".{LATEST}.") and n.endswith(".tmp") for n in seen)


# ---- claims ------------------------------------------------------------------------------------

def _foreign_claim(folder: Path, host: str, pid: int, age: float, **who) -> None:
    """A claim file as another holder writes it; its heartbeat (the file's mtime) ``age`` seconds old."""
    t = time.time() - age
    (folder / CLAIM).write_text(json.dumps({"host": host, "pid": pid, "started": t, "token": uuid.uuid4().hex,
                                            **who}))
    os.utime(folder / CLAIM, (t, t))


def _this_process() -> dict:
    boot, ns = identity()
    return {"boot_id": boot, "pid_ns": ns, "pid_start": start_time(os.getpid())}


def test_a_live_holder_on_this_host_is_never_taken_over_however_old_its_heartbeat(tmp_path):
    # alive: this process, as its own claim names it
    _foreign_claim(tmp_path, socket.gethostname(), os.getpid(), age=10 * 3600, **_this_process())
    assert acquire(tmp_path, stale_after=3 * BEAT) is None
    _foreign_claim(tmp_path, socket.gethostname(), 2**22 + 12345, age=0, **_this_process())  # no such pid
    claim = acquire(tmp_path, log=lambda m: None)
    assert claim is not None
    claim.release()


def test_another_hosts_claim_is_taken_over_only_after_the_stale_limit(tmp_path):
    _foreign_claim(tmp_path, "elsewhere", 1, age=100)
    assert acquire(tmp_path, stale_after=300) is None
    messages = []
    claim = acquire(tmp_path, stale_after=90, log=messages.append)
    assert claim is not None and "taking over" in messages[0]
    claim.release()


@pytest.mark.parametrize("limit", [0, 5, 3 * BEAT - 1, float("nan")])
def test_the_stale_limit_cannot_be_set_below_a_few_heartbeats(tmp_path, limit):
    with pytest.raises(ConfigError, match="--stale-after .* too short"):
        check_stale_after(limit)
    with pytest.raises(ConfigError):
        acquire(tmp_path, stale_after=limit)
    check_stale_after(3 * BEAT)


def test_a_holder_that_loses_its_claim_stops_at_once_and_leaves_the_cell(tmp_path, tiny_dm):
    cell = nano_cell(SHORT, **{"train.max_steps": 40, "train.val_every": 100})
    folder = tmp_path / "t" / cell.id
    claim = acquire(folder, stale_after=3 * 3600, beat=3600)
    claim.lost = True  # as refresh() finds it when another run took the claim over
    messages = []
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0), warn=messages.append,
                     claim=claim)
    assert rec.status == "lost" and "taken over" in messages[0]
    # the claim is re-read before the first write: nothing of this run is in the cell's folder
    assert sorted(p.name for p in folder.iterdir()) == ["claim.json"]
    claim.release()


# ---- the train clock ---------------------------------------------------------------------------

@pytest.mark.slow  # sleeps 6 s by design
def test_checkpoint_saves_and_probes_are_held_out_of_the_train_clock(tmp_path, tiny_dm, monkeypatch):
    from bench.run.engine.probes.training import Probes

    base = train_cell(nano_cell(SHORT), "t", tiny_dm, RunOptions(out=tmp_path / "a", quiet=True, ckpt_every=0))
    real_save, real_sample = AtomicCheckpointIO.save_checkpoint, Probes._sample

    pause = 0.6  # 10 x 0.6 s: many times the short run's own train time, which the clocks are compared by

    def slow_save(self, *a, **k):
        time.sleep(pause)
        return real_save(self, *a, **k)

    def slow_sample(self, *a, **k):
        time.sleep(pause)
        return real_sample(self, *a, **k)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", slow_save)
    monkeypatch.setattr(Probes, "_sample", slow_sample)
    rec = train_cell(nano_cell(SHORT, **{"train.probe_every": 2}), "t", tiny_dm,
                     RunOptions(out=tmp_path / "b", quiet=True, ckpt_every=1))
    assert rec.status == "ok"
    # 6 saves and 4 probe samples slept 6 s in all; a clock that counted them would show it
    assert rec.metrics.train_seconds < base.metrics.train_seconds + 5 * pause
    assert rec.metrics.tokens_per_sec > base.metrics.tokens_per_sec / 3


def test_throughput_pools_every_segment_and_says_why_when_none_measured():
    from bench.run.engine.callbacks import pooled_series, steady_state

    series = pooled_series([(1.0, 10), (3.0, 10)])  # two segments: 20 batches in 4 s
    out = steady_state(series, tokens=100, samples=1, flops=1.0, peak_flops=None)
    assert out["tokens_per_sec"] == pytest.approx(20 * 100 / 4.0)
    assert pooled_series([]) == [] and pooled_series([(0.0, 0)]) == []


def test_a_cell_too_short_for_its_warmup_says_why_it_has_no_tokens_per_sec(tmp_path, tiny_dm):
    rec = train_cell(nano_cell(SHORT, **{"train.throughput_warmup": 50}), "t", tiny_dm,
                     RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
    assert rec.status == "ok" and rec.metrics.tokens_per_sec is None
    assert "not measured" in rec.metrics.extra["tokens_per_sec_basis"]


# ---- what the record says ----------------------------------------------------------------------

def test_the_record_says_how_shared_the_machine_was_and_the_axis_order(tmp_path, tiny_dm, monkeypatch):
    monkeypatch.setenv("BENCH_WORKERS", "2")
    order = {"activation": ["swiglu", "gelu"]}
    rec = train_cell(nano_cell(SHORT), "t", tiny_dm,
                     RunOptions(out=tmp_path, quiet=True, ckpt_every=0, axis_order=order))
    on_disk = json.loads(rec.path.read_text())
    s = on_disk["sharing"]
    assert s["cpu_count"] == os.cpu_count() and s["threads"] == torch.get_num_threads() and s["workers"] == 2
    assert s["shared"] is True and isinstance(s["load_avg_1m"], float)
    assert on_disk["axis_order"] == order


# ---- the curve: one file, each row once, whole at every instant ---------------------------------

HEADER = "epoch,step,train/loss,val/loss\r\n"
ROWS = ["0,0,5.0,\r\n", "0,1,4.0,\r\n", "0,1,,3.9\r\n", "0,2,3.5,\r\n", "0,3,3.0,\r\n"]


def write_curve(folder: Path, rows=ROWS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.csv"
    path.write_bytes((HEADER + "".join(rows)).encode())
    return path


def test_a_resume_keeps_the_rows_before_its_checkpoint_and_appends_to_the_same_file(tmp_path):
    from bench.run.engine.curve_log import CurveWriter, start_curve

    path = write_curve(tmp_path)
    start_curve(tmp_path, 2)  # checkpoint at step 2: rows logged at steps >= 2 are redone
    assert path.read_bytes().decode() == HEADER + "".join(ROWS[:3])
    writer = CurveWriter(str(tmp_path))
    writer.log_metrics({"train/loss": 4.0, "epoch": 0}, step=1)  # the checkpoint's replayed row: once
    writer.log_metrics({"train/loss": 3.25, "epoch": 0}, step=2)
    writer.save()
    assert path.read_bytes().decode() == HEADER + "".join(ROWS[:3]) + "0,2,3.25,\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_a_fresh_start_drops_an_old_curve_and_old_parts_are_merged_on_resume(tmp_path):
    from bench.run.engine.curve_log import start_curve

    path = write_curve(tmp_path)
    start_curve(tmp_path, None)  # no checkpoint (e.g. --force): a new curve
    assert not path.exists()
    # an older version left the curve before its resume as a part: merged, then cut at the checkpoint
    (tmp_path / "metrics.part-001.csv").write_bytes((HEADER + "".join(ROWS[:2])).encode())
    write_curve(tmp_path, ["0,1,,3.9\r\n", "0,2,3.5,\r\n"])
    start_curve(tmp_path, 2)
    assert path.read_bytes().decode() == HEADER + "".join(ROWS[:3])
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]


def test_a_new_column_rewrites_the_curve_atomically_and_a_full_disk_leaves_it_whole(tmp_path, monkeypatch):
    from bench.run.engine import curve_log

    path = write_curve(tmp_path)
    before = path.read_bytes()
    writer = curve_log.CurveWriter(str(tmp_path))

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    writer.log_metrics({"val/loss": 2.9, "time/train_seconds": 1.5, "epoch": 0}, step=4)
    with pytest.raises(OSError):
        writer.save()  # a new column: the whole file is rewritten through a temp file
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["metrics.csv"]
    monkeypatch.undo()
    writer.log_metrics({"val/loss": 2.9, "time/train_seconds": 1.5, "epoch": 0}, step=4)
    writer.save()
    assert path.read_text().splitlines()[0] == "epoch,step,time/train_seconds,train/loss,val/loss"


def test_a_short_append_on_a_full_disk_is_taken_back(tmp_path, monkeypatch):
    from bench.run.engine import curve_log

    path = write_curve(tmp_path)
    before = path.read_bytes()
    writer = curve_log.CurveWriter(str(tmp_path))
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:3]))  # half a row, then full
    writer.log_metrics({"train/loss": 2.5, "epoch": 0}, step=4)
    with pytest.raises(OSError) as e:
        writer.save()
    assert e.value.errno == errno.ENOSPC and path.read_bytes() == before


def test_a_rerun_without_a_checkpoint_starts_a_new_curve(tmp_path, tiny_dm):
    cell = nano_cell(SHORT)
    folder = tmp_path / "t" / cell.id
    write_curve(folder, ["0,0,9.0,\r\n", "0,99,9.0,\r\n"])  # a curve of an earlier run (--force)
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
    assert rec.status == "ok"
    text = (folder / "metrics.csv").read_text()
    assert "9.0" not in text and ",99," not in text


# ---- progress in logs --------------------------------------------------------------------------

LINE = re.compile(r"^(?P<cell>\S+): step (?P<step>\d+)/(?P<total>\d+), loss (?P<loss>\S+), (?P<tps>\S+) tok/s, "
                  r"ETA (?P<eta>\S+), phase (?P<phase>\w+)$")


@pytest.mark.slow  # a subprocess that imports torch
def test_a_run_whose_stderr_is_a_pipe_prints_progress_lines_with_every_phase(tmp_path):
    """`bench run` as in CI or under nohup: stderr piped, a line at every step (interval 0). About
    10 s: one nano cell of 6 steps in a subprocess that imports torch."""
    root = Path(__file__).resolve().parents[4]
    args = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.max_steps", "6",
            "--train.val_every", "3", "--train.probe_every", "3", "--train.log_every", "1",
            "--train.throughput_warmup", "1", "--train.val_tokens", "4096", "--ckpt-every", "3"]
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "bench.cli", "run", *args, "--out", str(tmp_path),
                          "--progress-every", "0"], cwd=root, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr
    lines = [m.groupdict() for m in map(LINE.match, run.stderr.splitlines()) if m]
    assert lines, run.stderr
    (cell,) = {x["cell"] for x in lines}
    assert (tmp_path / "default" / cell / "record.json").exists()  # the cell's id, as in the results folder
    assert {x["total"] for x in lines} == {"6"}
    steps = [int(x["step"]) for x in lines]
    assert steps == sorted(steps) and steps[-1] == 6
    assert {x["phase"] for x in lines} == {"train", "validate", "probes", "checkpoint"}
    assert any(x["loss"] != "-" for x in lines) and any(x["tps"] != "-" for x in lines)


def test_quiet_prints_no_progress_lines_and_a_terminal_gets_the_display_instead(tmp_path):
    from bench.commands.common import add_run_options, run_options
    from bench.console import logs_progress

    p = argparse.ArgumentParser()
    add_run_options(p)
    assert run_options(p.parse_args(["--out", str(tmp_path)])).progress_every == 30.0
    assert run_options(p.parse_args(["--out", str(tmp_path), "--progress-every", "5"])).progress_every == 5.0
    assert run_options(p.parse_args(["--out", str(tmp_path), "--quiet"])).progress_every is None

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert logs_progress(30.0, io.StringIO()) and logs_progress(0.0, io.StringIO())
    assert not logs_progress(None, io.StringIO()) and not logs_progress(30.0, Terminal())


def test_every_test_docs_reproducibility_names_exists():
    """The page states only what a test holds: each test it names must be defined under tests/."""
    root = Path(__file__).resolve().parents[4]
    named = set(re.findall(r"`((?:test|check)_\w+)`", (root / "docs" / "reproducibility.md").read_text()))
    defined = {m for f in (root / "tests").rglob("test_*.py")
               for m in re.findall(r"^def ((?:test|check)_\w+)", f.read_text(), re.M)}
    assert len(named) >= 30 and named <= defined, sorted(named - defined)


def test_a_workers_parent_logging_to_a_file_prints_each_workers_line_from_its_status(tmp_path, capsys):
    from rich.console import Console

    from bench.console import progress_columns
    from bench.launch.workers import _display

    class Worker:  # running for one poll, then exited
        returncode, polls = 0, 0

        def poll(self):
            self.polls += 1
            return None if self.polls == 1 else 0

    status = tmp_path / "w0.json"
    status.write_text(json.dumps({"worker": 0, "pid": 1, "device": "cpu x1", "cell": "nano-c1", "step": 3,
                                  "total": 6, "loss": "4.100", "tps": "1,234", "eta": "0:00:05",
                                  "phase": "validate", "state": "training"}))
    shown = io.StringIO()
    _display(progress_columns("loss", "tps", "phase"), [(Worker(), None, status)], [], "m",
             RunOptions(out=tmp_path, quiet=True, progress_every=0), Console(file=shown))
    lines = [m.groupdict() for m in map(LINE.match, capsys.readouterr().err.splitlines()) if m]
    assert lines == [{"cell": "nano-c1", "step": "3", "total": "6", "loss": "4.100", "tps": "1,234",
                      "eta": "0:00:05", "phase": "validate"}]


def test_the_live_display_is_told_each_phase_of_the_cell(tmp_path, tiny_dm):
    class Display:  # what train_cell feeds: a rich Progress, or a --workers child's status file
        def __init__(self):
            self.phases = []

        def add_task(self, description, total=None, **fields):
            self.phases.append(fields.get("phase"))
            return 0

        def update(self, task, completed=None, **fields):
            if fields.get("phase") != self.phases[-1]:
                self.phases.append(fields.get("phase"))

        def remove_task(self, task):
            pass

    display = Display()
    rec = train_cell(nano_cell(SHORT, **{"train.probe_every": 3}), "t", tiny_dm,
                     RunOptions(out=tmp_path, quiet=True, ckpt_every=3), progress=display)
    assert rec.status == "ok"
    assert set(display.phases) == {"train", "validate", "probes", "checkpoint"}
    assert display.phases[0] == "train" and display.phases[-1] in ("validate", "probes")
