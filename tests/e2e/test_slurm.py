"""`bench run --slurm` / `bench status` through a real single-node SLURM (.ci/slurm-up.sh starts one;
.ci/run calls it). Skipped, with the reason, where sbatch/srun do not answer."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"}


def slurm_answers() -> str | None:
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        return "no SLURM here (sbatch/srun not found): run .ci/slurm-up.sh (root) to start a single-node one"
    try:
        subprocess.run(["srun", "-t", "1", "hostname"], check=True, capture_output=True, timeout=30)
    except (subprocess.SubprocessError, OSError) as e:
        return f"SLURM does not answer (`srun hostname`: {e}); run .ci/slurm-up.sh"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(slurm_answers()), reason=slurm_answers() or "")]


def bench(*args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, timeout=300)
    assert not check or r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return r


def states(sel: list[str]) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads(bench("status", *sel, "--json").stdout)["cells"]}


def wait_for(pred, sel, timeout=300, what=""):
    t0 = time.time()
    while time.time() - t0 < timeout:
        s = states(sel)
        if pred(s):
            return s
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}: {s}")


def test_submit_matrix_completes_and_table_shows_every_cell(tmp_path):
    sel = ["--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre", "--out", str(tmp_path),
           "--train.probe_every", "0", "--train.max_steps", "10", "--train.val_every", "10",
           "--train.val_tokens", "4096", "--train.accelerator", "cpu"]  # cpu: the tasks ask for no GPU
    r = bench("run", *sel, "--slurm", "--time", "10", "--cpus-per-task", "1")
    assert "2 cell(s) to submit" in r.stdout
    jobs = json.loads((tmp_path / "default" / ".slurm" / "jobs.json").read_text())
    assert len(jobs) == 2
    s = wait_for(lambda s: all(c["state"] in ("done", "failed") for c in s.values()), sel, what="both cells")
    assert all(c["state"] == "done" for c in s.values()), s
    table = bench("table", str(tmp_path / "default"), "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert sorted(r["activation"] for r in rows if r.get("status") == "ok") == ["gelu", "swiglu"]
    # resubmitting finds nothing to do
    assert "0 cell(s) to submit" in bench("run", *sel, "--slurm").stdout


def test_signalled_task_requeues_and_resumes_from_its_checkpoint(tmp_path):
    sel = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--out", str(tmp_path),
           "--train.probe_every", "0", "--train.max_steps", "80", "--train.val_every", "80",
           "--train.val_tokens", "4096", "--train.accelerator", "cpu"]
    bench("run", *sel, "--slurm", "--time", "10", "--cpus-per-task", "1", "--ckpt-every", "10")
    (job,) = json.loads((tmp_path / "default" / ".slurm" / "jobs.json").read_text()).values()
    ckpts = list((tmp_path / "default").glob("*/checkpoints/latest.ckpt"))
    t0 = time.time()
    while not ckpts and time.time() - t0 < 240:
        time.sleep(1)
        ckpts = list((tmp_path / "default").glob("*/checkpoints/latest.ckpt"))
    assert ckpts, "no checkpoint appeared"
    # what SLURM sends before a time limit (--signal=USR2@S): submitit checkpoints and requeues
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    t0 = time.time()
    while time.time() - t0 < 60:  # SLURM holds a requeued job back (BeginTime); let it go now
        q = subprocess.run(["squeue", "-h", "-j", job.split("_")[0], "-o", "%T %r"], capture_output=True,
                           text=True).stdout
        if "PENDING" in q:
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)
            break
        time.sleep(1)
    else:
        pytest.fail("the signalled task was not requeued")
    s = wait_for(lambda s: all(c["state"] in ("done", "failed") for c in s.values()), sel, what="the requeued cell")
    (cell,) = s.values()
    assert cell["state"] == "done"
    rec = json.loads(next((tmp_path / "default").glob("*/record.json")).read_text())
    assert rec["status"] == "ok" and rec["metrics"]["steps"] == 80
    assert rec.get("resumed_from_step", 0) > 0  # resumed, not retrained from step 0
    log = "".join(p.read_text() for p in (tmp_path / "default" / ".slurm").glob("*/*log.out"))
    assert "Requeued job" in log


def test_a_sweep_submitted_with_wait_shows_its_tables_when_the_tasks_end(tmp_path):
    """--slurm --wait: submit, wait for the tasks, then show what the command shows after a local run
    (here the sweep's LR tables); a rerun submits nothing."""
    sel = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--lr-grid", "1e-3,3e-3", "--out",
           str(tmp_path), "--train.probe_every", "0", "--train.max_steps", "10", "--train.val_every", "10",
           "--train.val_tokens", "4096", "--train.accelerator", "cpu", "--quiet"]
    r = bench("sweep", *sel, "--slurm", "--wait", "--time", "10", "--cpus-per-task", "1")
    assert "2 cell(s) to submit" in r.stdout and "learning-rate robustness" in r.stdout
    recs = [json.loads(p.read_text()) for p in (tmp_path / "default-lr").glob("*/record.json")]
    assert sorted(x["config"]["train"]["lr"] for x in recs if x["status"] == "ok") == [1e-3, 3e-3]
    again = bench("sweep", *sel, "--slurm", "--wait").stdout
    assert "0 cell(s) to submit" in again and "learning-rate robustness" in again
