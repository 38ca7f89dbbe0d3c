"""What killed runs leave is removed, for finished cells too: a stale claim, both checkpoints (100 GB
at 7B), claim and writers' temp files in a cell, a killed table or report write's temp files in the
matrix folder, and old `--workers` launch folders; by the next `bench run` or by `bench status --clean`."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.run.engine.claims import CLAIM, holder

ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
ARGS = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.probe_every", "0",
        "--train.max_steps", "4", "--train.val_every", "2", "--train.val_tokens", "1024", "--ckpt-every", "2",
        "--quiet"]
HOUR = 3600


def killed_after_its_record(out: Path) -> Path:
    """A `bench run` SIGKILLed just after it wrote its cell's `ok` record: the claim and both
    checkpoints are still there. Returns the cell folder."""
    r = subprocess.run([sys.executable, "-m", "bench.cli", "run", *ARGS, "--out", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**ENV, "BENCH_KILL_AT": "record-written"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    (record,) = out.glob("default/*/record.json")
    cell = record.parent
    assert json.loads(record.read_text())["status"] == "ok"
    assert (cell / CLAIM).exists() and (cell / "checkpoints" / "latest.ckpt").exists()
    return cell


def plant_temps(cell: Path) -> None:
    """Temp files of writers killed before their rename, aged past any live writer's."""
    old = time.time() - 2 * HOUR
    for name in (f".{CLAIM}.{'a' * 32}.0badf00d", ".record.json.x1y2z3.tmp", ".metrics.csv.q9w8e7.tmp"):
        (cell / name).write_text("{")
        os.utime(cell / name, (old, old))


@pytest.mark.slow  # trains nano cells
@pytest.mark.parametrize("how", ["the next run", "bench status --clean"])
def test_a_finished_cell_killed_after_its_record_is_cleaned(tmp_path, bench_cli, how):
    out = tmp_path / "out"
    cell = killed_after_its_record(out)
    plant_temps(cell)
    ended = json.loads((cell / "record.json").read_text())["ended"]
    if how == "the next run":
        r = bench_cli("run", *ARGS, "--out", out)
        code, said = r.returncode, r.stdout + r.stderr
        assert code == 0 and "are done" in said
    else:
        r = bench_cli("status", "--scale", "nano", "--activation", "swiglu", "--norm", "pre",
                             "--train.probe_every", "0", "--train.max_steps", "4", "--train.val_every", "2",
                             "--train.val_tokens", "1024", "--out", out, "--clean")
        code, said = r.returncode, r.stdout + r.stderr
        assert code == 0 and "done" in said
    assert "a stale claim" in said and "checkpoints" in said and "3 temp file(s)" in said
    assert sorted(p.name for p in cell.iterdir()) == ["metrics.csv", "record.json"]
    assert json.loads((cell / "record.json").read_text())["ended"] == ended  # the cell itself untouched
    assert holder(cell) is None


@pytest.mark.slow  # trains nano cells
def test_keep_checkpoints_keeps_them_and_a_live_holder_is_left_alone(tmp_path, bench_cli):
    from bench.run.engine.claims import acquire

    out = tmp_path / "out"
    cell = killed_after_its_record(out)
    r = bench_cli("run", *ARGS, "--out", out, "--keep-checkpoints")
    code, said = r.returncode, r.stdout + r.stderr
    assert code == 0 and "a stale claim" in said and "checkpoints" not in said.split("a stale claim")[1].split("\n")[0]
    assert (cell / "checkpoints" / "latest.ckpt").exists() and not (cell / CLAIM).exists()
    plant_temps(cell)
    with acquire(cell, stale_after=3 * 3600, beat=3600):  # a live run holds the cell (retraining it, say)
        r = bench_cli("run", *ARGS, "--out", out)
        code, said = r.returncode, r.stdout + r.stderr
        assert code == 0 and "removed" not in said
        assert (cell / ".record.json.x1y2z3.tmp").exists()  # not ours to touch while it is held


def test_a_killed_table_writes_temp_files_go_by_age(tmp_path, bench_cli):
    """A kill inside `bench table` or `bench report` leaves .leaderboard.md.*.tmp; the next run or
    status --clean removes those older than an hour (a live writer's lives for milliseconds)."""
    from unit.results.support import write_matrix

    from bench.atomic import TEMP_AGE, remove_old_temps

    folder, _ = write_matrix(tmp_path, with_probes=False, scales=("nano",), seeds=(0,))
    old, young = folder / ".leaderboard.md.k1ll3d.tmp", folder / ".report.html.wr1t1ng.tmp"
    for path in (old, young):
        path.write_text("half")
    os.utime(old, (time.time() - TEMP_AGE - 60,) * 2)
    assert remove_old_temps(folder) == [old]
    assert young.exists() and not old.exists()
    old.write_text("half")
    os.utime(old, (time.time() - TEMP_AGE - 60,) * 2)
    r = bench_cli("status", "--scale", "nano", "--out", tmp_path, "--name", folder.name, "--clean")
    code, said = r.returncode, r.stdout + r.stderr
    assert code == 0 and "1 temp file(s)" in said and not old.exists() and young.exists()


def test_old_workers_launch_folders_are_pruned(tmp_path):
    from bench.launch.workers import KEEP_LAUNCHES, launch_dir, prune_launches

    parent = tmp_path / "m" / ".workers"
    old, recent = parent / "20200101T000000-1", parent / "20200102T000000-2"
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "w0.json").write_text("{}")
    stamp = time.time() - KEEP_LAUNCHES - HOUR
    for path in (old, old / "w0.json", recent):
        os.utime(path, (stamp, stamp))
    # recent's status file was written just now: a launch still running
    assert prune_launches(parent) == [old]
    assert recent.exists()
    new = launch_dir(parent)  # every --workers launch prunes first
    assert new.exists() and sorted(p.name for p in parent.iterdir()) == sorted([recent.name, new.name])


@pytest.mark.parametrize("by", ["matrix", "cells file"])
def test_status_reads_folders_without_loading_the_training_stack(tmp_path, by):
    """`bench status` (polled by users and by `--slurm --wait`, which names the launch's cells file)
    reads records and claims: Lightning, which the training stack loads in seconds, stays out of its
    process."""
    if by == "matrix":
        args = [*ARGS[:6], "--out", str(tmp_path), "--json"]
    else:
        from bench.commands.common import cells_from
        from bench.commands.run import add_parser
        from bench.launch.child import write_cells
        from bench.run.config.options import RunOptions

        import argparse

        matrix, cells = cells_from(add_parser(argparse.ArgumentParser().add_subparsers()).parse_args(ARGS[:6]))
        write_cells(tmp_path / "cells.json", matrix.name, cells, RunOptions(out=tmp_path))
        args = ["--cells", str(tmp_path / "cells.json"), "--json"]
    code = ("import sys; from bench.cli import main; "
            "code = main(['status', *sys.argv[1:]]); "
            "print('lightning' in sys.modules or 'lightning.pytorch' in sys.modules, code)")
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    *shown, last = r.stdout.strip().splitlines()
    assert last.split() == ["False", "0"], r.stdout[-2000:]
    assert len(json.loads("\n".join(shown))["cells"]) == 1  # the cell's state, read from the file or the matrix
