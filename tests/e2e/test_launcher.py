"""The one launcher (bench/launch/launcher.py): `bench run`, `bench ladder` and `bench sweep` train through
--workers and submit through --slurm with the same options, and every child (a worker, a SLURM task)
rebuilds exactly the cells the command expanded, from the cells file alone.

SLURM here is a stand-in `sbatch` on PATH that answers as sbatch does ("Submitted batch job 4242"):
the submission path (cells file, job ids, the batch file's resources) runs for real without a cluster;
tests/e2e/test_slurm.py runs tasks on a real single-node SLURM where .ci/slurm-up.sh can start one."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import cli

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "PYTHONPATH": str(ROOT)}
COMMANDS = {  # each command's own selection, and the results folder it names
    "run": (["--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre"], "default"),
    "ladder": (["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--params", "2e3:1.2e4", "--rungs", "2",
                "--head-dim", "8", "--aspect", "16", "--tokens-per-param", "0.1"], "default-ladder"),
    "sweep": (["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--lr-grid", "1e-3,3e-3"], "default-lr"),
}
TINY = ["--train.probe_every", "0", "--train.max_steps", "4", "--train.val_every", "4", "--train.val_tokens", "1024",
        "--train.warmup_steps", "1", "--train.log_every", "1", "--ckpt-every", "0", "--quiet"]
SHOWN = {"run": "leaderboard.md", "ladder": "scaling laws", "sweep": "learning-rate robustness"}  # each one's tables


def argv_of(command: str, *extra: str) -> list[str]:
    return [command, *COMMANDS[command][0], *TINY, *extra]


def parent_cells(monkeypatch, command: str, *extra: str) -> list:
    """The cells the command hands to the launcher, caught in this process (nothing trained)."""
    from bench.launch import launcher

    caught = []
    with monkeypatch.context() as m:
        m.setattr(launcher, "launch", lambda name, cells, opts, how: caught.append(list(cells))
                  or launcher.Launched(here=False))
        assert cli.main(argv_of(command, *extra)) == 0
    (cells,) = caught
    return cells


def described(cells) -> list:
    return [[c.id, [list(a) for a in c.axes], c.config.config_hash()] for c in cells]


def rebuilt_elsewhere(cells_file: Path, cwd: Path) -> dict:
    """A fresh process, started elsewhere, rebuilds the cells from the file alone."""
    code = ("import json, sys; from bench.launch.child import read_cells; h = read_cells(sys.argv[1]); "
            "print(json.dumps({'matrix': h.matrix, 'out': str(h.opts.out), 'command': list(h.opts.command), "
            "'cells': [[c.id, [list(a) for a in c.axes], c.config.config_hash()] for c in h.cells]}))")
    r = subprocess.run([sys.executable, "-c", code, str(cells_file)], cwd=cwd, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch) -> Path:
    """`sbatch` and `srun` stand-ins first on PATH (for this process and the ones it starts), and a
    `squeue` and `sacct` that know no job: this machine's own SLURM, up or down, stays out of it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'Submitted batch job 4242'\n")
    for tool in ("srun", "squeue", "sacct"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun", "squeue", "sacct"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_every_training_command_trains_through_workers(command, tmp_path, monkeypatch, capsys):
    """`bench <command> --workers 2`, run from a folder outside the repository with a relative --out:
    two children train the command's cells into the caller's folder, each cell once (claims) and in
    one run (its curve's steps once each), from the cells file (the exact cells the command
    expanded); the command shows its own tables without loading Lightning (the children train),
    and a rerun starts no worker."""
    want = parent_cells(monkeypatch, command)
    argv = argv_of(command, "--out", "out", "--workers", "2")
    parent = ("import sys; from bench.cli import main; code = main(sys.argv[1:]); "
              "print('parent loaded Lightning' if 'lightning' in sys.modules else 'parent without Lightning'); "
              "sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", parent, *argv], cwd=tmp_path, env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert SHOWN[command] in r.stdout and r.stdout.strip().endswith("parent without Lightning"), r.stdout[-2000:]
    assert not (ROOT / "out").exists()
    folder = tmp_path / "out" / COMMANDS[command][1]
    (launch,) = (folder / ".workers").iterdir()
    assert sorted(p.name for p in launch.iterdir()) == ["cells.json", "w0.json", "w0.log", "w1.json", "w1.log"]
    logs = "".join((launch / f"w{i}.log").read_text() for i in range(2))
    trained = sorted(line.split()[-1] for line in logs.splitlines() if line.startswith("w") and " ok " in line)
    assert trained == sorted(c.id for c in want)  # every cell once, none twice
    for c in want:
        rec = json.loads((folder / c.id / "record.json").read_text())
        assert rec["status"] == "ok" and rec["config_hash"] == c.config.config_hash()
        assert rec["command"] == ["bench", *argv]  # the launching command, not the child's
        assert not (folder / c.id / "claim.json").exists()
        with open(folder / c.id / "metrics.csv") as f:
            steps = [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]
        assert steps == list(range(4))  # one run's rows, not two interleaved
    got = rebuilt_elsewhere(launch / "cells.json", tmp_path)
    assert got["cells"] == described(want) and got["matrix"] == folder.name
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 0  # a rerun finds every cell done, and starts no worker
    assert "0 cell(s) to train" in " ".join(capsys.readouterr().out.split())
    assert list((folder / ".workers").iterdir()) == [launch]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_training_command_submits_to_slurm_the_cells_it_expanded(command, tmp_path, monkeypatch, capsys,
                                                                      fake_slurm):
    """`--slurm` writes the cells file and one array task per cell, with the resources asked for; a
    fresh process rebuilds exactly the command's cells from that file, and `bench status --cells`
    follows them."""
    cpu = ["--train.accelerator", "cpu"]  # no GPU asked for (the stand-in cluster has none)
    want = parent_cells(monkeypatch, command, *cpu)
    capsys.readouterr()
    out = tmp_path / "out"
    argv = argv_of(command, *cpu, "--out", str(out), "--slurm", "--time", "7", "--partition", "debug")
    assert cli.main(argv) == 0
    text = " ".join(capsys.readouterr().out.split())
    n = len(want)
    assert f"{n} cell(s) to submit" in text and f"submitted array 4242 ({n} task(s), no GPU each)" in text
    slurm = out / COMMANDS[command][1] / ".slurm"
    assert json.loads((slurm / "jobs.json").read_text()) == {c.id: f"4242_{i}" for i, c in enumerate(want)}
    batch = (slurm / "4242" / "4242_submission.sh").read_text()
    assert f"#SBATCH --array=0-{n - 1}%{n}" in batch and "#SBATCH --time=7" in batch
    assert "#SBATCH --partition=debug" in batch and "gpus" not in batch
    (cells_file,) = slurm.glob("cells-*.json")
    assert f"bench status --cells {cells_file}" in text
    got = rebuilt_elsewhere(cells_file, tmp_path)
    assert got["cells"] == described(want) and got["out"] == str(out) and got["command"] == ["bench", *argv]
    assert cli.main(["status", "--cells", str(cells_file), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["cells"]
    assert [(r["id"], r["state"], r["slurm_job"]) for r in rows] == [(c.id, "not started", f"4242_{i}")
                                                                     for i, c in enumerate(want)]


@pytest.mark.parametrize("settings, gpus", [([], 1), (["--train.accelerator", "gpu", "--devices-per-cell", "2"], 2),
                                            (["--train.accelerator", "cpu", "--devices-per-cell", "2"], 0)])
def test_a_slurm_task_asks_for_the_gpus_its_cell_trains_on(settings, gpus, tmp_path, capsys, fake_slurm):
    """--devices-per-cell K: K GPUs and K srun tasks (one per rank) per array task, and train.devices K
    in every cell; 'auto' asks for the GPU it would use; a CPU cell asks for none."""
    assert cli.main(argv_of("run", *settings, "--out", str(tmp_path), "--slurm")) == 0
    assert f"(2 task(s), {f'{gpus} GPU(s)' if gpus else 'no GPU'} each)" in " ".join(capsys.readouterr().out.split())
    batch = (tmp_path / "default" / ".slurm" / "4242" / "4242_submission.sh").read_text()
    if gpus:
        assert f"#SBATCH --gpus-per-node={gpus}" in batch and f"#SBATCH --ntasks-per-node={gpus}" in batch
    else:
        assert "gpus" not in batch and "ntasks" not in batch
    (cells_file,) = (tmp_path / "default" / ".slurm").glob("cells-*.json")
    devices = {c["config"]["train"]["devices"] for c in json.loads(cells_file.read_text())["cells"]}
    assert devices == {"2" if "--devices-per-cell" in settings else "1"}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("slurm", [[], ["--slurm"]])
def test_a_dry_run_lists_the_cells_it_would_launch_and_writes_nothing(command, slurm, tmp_path, monkeypatch, capsys):
    want = [c.id for c in parent_cells(monkeypatch, command)]
    capsys.readouterr()
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))  # a dry run needs no cluster
    assert cli.main(argv_of(command, "--out", str(tmp_path / "out"), "--dry-run", *slurm)) == 0
    listed = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  nano-")]
    assert listed == want
    assert not (tmp_path / "out").exists()


def test_slurm_without_a_cluster_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "no-slurm-here"))
    assert cli.main(argv_of("run", "--out", str(tmp_path / "out"), "--slurm")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sbatch and srun not found" in err and "--dry-run" in err
    assert not (tmp_path / "out" / "default" / ".slurm").exists()


@pytest.mark.slow
def test_a_slurm_task_trains_its_cell_from_the_submitted_cells_file(tmp_path, monkeypatch, capsys, fake_slurm):
    """What an array task runs, without a cluster: `CellTask(cells file, id)()` in a fresh process started
    elsewhere trains that cell (and only it) into the submitter's results tree, keeping the submitter's
    command line; submitting again leaves it out."""
    cpu = ["--train.accelerator", "cpu"]
    want = parent_cells(monkeypatch, "run", *cpu)
    argv = argv_of("run", *cpu, "--out", "res", "--slurm")
    monkeypatch.chdir(tmp_path)  # a relative --out: the task must write where the submitter meant
    assert cli.main(argv) == 0
    (cells_file,) = (tmp_path / "res" / "default" / ".slurm").glob("cells-*.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys; from bench.launch.slurm import CellTask; "
            "print(CellTask(sys.argv[1], sys.argv[2], cwd=sys.argv[3])())")
    r = subprocess.run([sys.executable, "-c", code, str(cells_file), want[1].id, str(tmp_path)], cwd=elsewhere,
                       env=ENV, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-2000:]
    (rec,) = (tmp_path / "res" / "default").glob("*/record.json")
    rec = json.loads(rec.read_text())
    assert rec["id"] == want[1].id and rec["config_hash"] == want[1].config.config_hash()
    assert rec["command"] == ["bench", *argv] and not list(elsewhere.iterdir())
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "1 cell(s) to submit, 1 done or running" in capsys.readouterr().out


def test_a_submission_sbatch_refuses_is_one_line_and_leaves_no_cells_file(tmp_path, monkeypatch, capsys, fake_slurm):
    (fake_slurm / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\n"
                                       "exit 1\n")
    assert cli.main(argv_of("run", "--out", str(tmp_path), "--slurm", "--partition", "gpu")) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["error: sbatch refused the array: sbatch: error: invalid partition specified: gpu"]
    assert list((tmp_path / "default" / ".slurm").iterdir()) == []  # no cells file a status could be pointed at
