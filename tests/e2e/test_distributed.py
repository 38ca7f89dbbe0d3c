"""Multi-process cells for real: 2 CPU processes (gloo) through Lightning's DDP, via `bench run`.

Tolerance: litdata hands each rank its own chunks, so a 2 x b DDP run and a 1 x 2b run see the
same data distribution but not the same rows at each step; their curves agree in expectation, not
bitwise. Over 30 nano steps the validation losses (same validation rows, synced over ranks by
torchmetrics) agree within 0.1 nats at every validation (measured gap: ~0.04).
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.probe_every", "0",
        "--train.max_steps", "30", "--train.val_every", "10", "--ckpt-every", "0", "--train.val_tokens", "4096",
        "--train.accelerator", "cpu", "--quiet"]


def bench_run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LITDATA_DISABLE_VERSION_CHECK": "1"}  # 2 ranks x 1 thread
    return subprocess.run([sys.executable, "-m", "bench.cli", "run", *BASE, "--out", str(out), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def one_cell(out: Path) -> tuple[dict, list[float]]:
    (folder,) = [p for p in (out / "default").iterdir() if p.is_dir() and not p.name.startswith(".")]
    rec = json.loads((folder / "record.json").read_text())
    val = [float(r["val/loss"]) for r in csv.DictReader(open(folder / "metrics.csv")) if r.get("val/loss")]
    return rec, val


@pytest.mark.slow
def test_ddp_two_ranks_match_one_rank_and_write_once(tmp_path):
    ddp = bench_run(tmp_path / "ddp", "--train.devices", "2", "--train.strategy", "ddp", "--train.batch_size", "4")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = bench_run(tmp_path / "one", "--train.batch_size", "8")
    assert single.returncode == 0, single.stderr[-3000:]
    # only rank 0 prints and writes: one leaderboard, one "wrote" line
    assert ddp.stdout.count("leaderboard.md") == 1 and ddp.stdout.count("1 cell(s) to train") == 1
    rec, val = one_cell(tmp_path / "ddp")
    rec1, val1 = one_cell(tmp_path / "one")
    m = rec["metrics"]
    assert rec["status"] == "ok" and m["world_size"] == 2 and m["tokens_per_sec_basis"] == "total over 2 ranks"
    assert m["tokens"] == 30 * 4 * 64 * 2 == rec1["metrics"]["tokens"]
    assert m["tokens_per_sec"] == pytest.approx(2 * m["tokens_per_sec_per_device"])
    assert m["flops_per_sec"] == pytest.approx(2 * m["flops_per_batch"] * m["tokens_per_sec_per_device"] / (4 * 64))
    assert len(val) == len(val1) == 3
    assert max(abs(a - b) for a, b in zip(val, val1)) < 0.1, (val, val1)
    assert val[-1] < val[0] - 0.5  # both learned: the comparison is not between two flat curves


def _shard_worker(rank: int, world: int, init: str, full: "torch.Tensor",  # noqa: F821 - torch is imported inside
                  out: "torch.multiprocessing.Queue"):  # noqa: F821 - torch is imported inside (spawned worker)
    import torch
    import torch.distributed as dist

    from bench.run.engine.probes.measures import whole_norms

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    shard = full.flatten().chunk(world)[rank]  # FSDP's flat sharding: disjoint pieces of the tensor

    def reduce(t):
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    norms = torch.stack([torch.linalg.vector_norm(shard), torch.linalg.vector_norm(2 * shard)])
    out.put((rank, whole_norms(norms, reduce).tolist()))
    dist.destroy_process_group()


def test_fsdp_probe_norms_are_whole_model_norms(tmp_path):
    """Two real gloo processes, each holding half of a weight (FSDP's flat shards): the probes'
    combination gives the whole tensor's norm on every rank, not the local shard's. (Lightning 2.6
    refuses FSDP on CPU: "The strategy `fsdp` requires a GPU accelerator", so the full FSDP cell
    is a GPU check.)"""
    import torch
    import torch.multiprocessing as mp

    full = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    q = mp.get_context("spawn").Queue()
    mp.spawn(_shard_worker, args=(2, f"file://{tmp_path}/rendezvous", full, q), nprocs=2)
    got = dict(q.get() for _ in range(2))
    want = [torch.linalg.vector_norm(full).item(), 2 * torch.linalg.vector_norm(full).item()]
    for rank in (0, 1):
        assert got[rank] == pytest.approx(want, rel=1e-6)
    assert torch.linalg.vector_norm(full.flatten().chunk(2)[0]).item() < 0.9 * want[0]  # a shard's is not it


@pytest.mark.slow
def test_killed_worker_loses_only_its_cell_which_resumes(tmp_path):
    """kill -9 one worker mid-cell: the other cell finishes; the killed worker's cell is either
    taken over by the surviving worker (dead holder) or named by the parent, which exits non-zero,
    and resumed by a plain rerun; either way it resumes from its checkpoint, not from step 0."""
    import signal
    import time

    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"}
    sel = ["--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre", "--train.probe_every", "0",
           "--train.max_steps", "60", "--train.val_every", "60", "--train.val_tokens", "4096", "--out", str(tmp_path)]
    parent = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", *sel, "--ckpt-every", "10", "--workers", "2"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    folder, victim = tmp_path / "default", None
    t0 = time.time()
    while victim is None and time.time() - t0 < 300 and parent.poll() is None:
        time.sleep(0.5)
        try:
            s = json.loads(next((folder / ".workers").glob("*/w0.json")).read_text())
        except (OSError, ValueError, StopIteration):
            continue
        if s["cell"] and (folder / s["cell"] / "checkpoints" / "latest.ckpt").exists():
            victim = s
    assert victim is not None, "worker 0 never reached a checkpoint"
    os.kill(victim["pid"], signal.SIGKILL)
    out, _ = parent.communicate(timeout=600)
    records = {p.name: json.loads((p / "record.json").read_text())
               for p in folder.iterdir() if (p / "record.json").exists()}
    (other,) = [c for c in records if c != victim["cell"]]
    assert records[other]["status"] == "ok"  # the other worker's cell was not lost
    rec = records[victim["cell"]]
    if rec["status"] != "ok":  # no surviving worker came back to it: left resumable, and said so
        assert rec["status"] == "running"  # never read as done
        assert parent.returncode != 0 and "worker w0 exited" in out and victim["cell"] in out
        r = subprocess.run([sys.executable, "-m", "bench.cli", "run", *sel, "--ckpt-every", "10", "--quiet"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        rec = json.loads((folder / victim["cell"] / "record.json").read_text())
    # else the other worker reached it after the kill, took over the dead claim and resumed it
    assert rec["status"] == "ok" and rec["resumed_from_step"] >= 10 and rec["metrics"]["steps"] == 60


@pytest.mark.slow
def test_workers_with_ddp_cells_follow_rank0_claims(tmp_path):
    """--workers 2 --devices-per-cell 2 on CPU: two workers, each a 2-rank DDP cell; the ranks
    Lightning starts follow their rank 0's claim decisions, so each cell is trained once."""
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"}
    r = subprocess.run([sys.executable, "-m", "bench.cli", "run", "--scale", "nano", "--activation", "swiglu,gelu",
                        "--norm", "pre", "--train.probe_every", "0", "--train.max_steps", "10",
                        "--train.val_every", "10", "--train.val_tokens", "4096", "--ckpt-every", "0",
                        "--train.accelerator", "cpu",
                        "--train.strategy", "ddp", "--out", str(tmp_path), "--workers", "2", "--devices-per-cell", "2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    folder = tmp_path / "default"
    decisions = [json.loads(p.read_text()) for p in (folder / ".ranks").glob("*.json")]
    assert len(decisions) == 2
    cells = sorted(decisions[0])
    assert sorted(c for d in decisions for c, train in d.items() if train) == cells  # each cell by one worker
    for c in cells:
        m = json.loads((folder / c / "record.json").read_text())["metrics"]
        assert m["world_size"] == 2 and m["tokens"] == 10 * 8 * 64 * 2


@pytest.mark.slow
def test_sigterm_to_workers_parent_interrupts_every_cell_resumably(tmp_path):
    """SIGTERM to `bench run --workers 2`: every worker stops its cell at a step boundary, the cell
    is recorded `interrupted` with a checkpoint, claims are released, and the exit status is 143."""
    import signal
    import time

    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"}
    parent = subprocess.Popen([sys.executable, "-m", "bench.cli", "run", "--scale", "nano",
                               "--activation", "swiglu,gelu", "--norm", "pre", "--train.probe_every", "0",
                               "--train.max_steps", "5000",
                               "--train.val_every", "5000", "--train.val_tokens", "4096", "--ckpt-every", "1000",
                               "--out", str(tmp_path), "--workers", "2", "--quiet"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    while time.time() - t0 < 300:
        status = sorted((tmp_path / "default" / ".workers").glob("*/w[01].json"))
        try:
            if len(status) == 2 and all(json.loads(p.read_text())["step"] >= 5 for p in status):
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    parent.send_signal(signal.SIGTERM)
    out, _ = parent.communicate(timeout=300)
    assert parent.returncode == 143, out[-2000:]
    cells = [p for p in (tmp_path / "default").iterdir() if (p / "record.json").exists()]
    assert len(cells) == 2
    for c in cells:
        rec = json.loads((c / "record.json").read_text())
        assert rec["status"] == "interrupted" and not (c / "claim.json").exists()
        assert (c / "checkpoints").exists()  # saved at the stop (a resume starts there)


# ---- workers: serialized cells, paths, concurrent launches ------------------------------------------

ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"}
SEL = ["--scale", "nano", "--activation", "swiglu,gelu", "--norm", "pre", "--train.probe_every", "0",
       "--train.max_steps", "3", "--train.val_every", "3", "--train.val_tokens", "1024"]
TINY = [*SEL, "--ckpt-every", "0", "--quiet"]


def bench_cli(*args, cwd=ROOT, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**ENV, "PYTHONPATH": str(ROOT)})


def test_a_child_rebuilt_from_the_cells_file_has_the_parents_cells(tmp_path):
    """The cells a worker or SLURM task trains come from the file, not from re-parsing a command
    line: in a fresh process, every id, axis and config hash is the parent's (tuples, mappings, an
    axis from --model.ffn, a swept LR included)."""
    from bench.commands.common import cells_from
    from bench.commands.run import add_parser
    from bench.launch.child import write_cells
    from bench.run.config.options import RunOptions
    from bench.run.config.sweep import sweep_cells
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    args = add_parser(sub).parse_args(["--scale", "nano,micro", "--activation", "swiglu,polynorm", "--norm",
                                       "pre,lns+gpas", "--seed", "0,3", "--model.ffn", "moe,dense",
                                       "--train.betas", "0.8,0.9", "--data.eval", "a=bundled"])
    _, cells = cells_from(args)
    cells += sweep_cells(cells[:2], [1e-3, 3e-3])
    path = tmp_path / "cells.json"
    write_cells(path, "m", cells, RunOptions(out=Path("rel"), command=("bench", "run", "--scale", "nano,micro")))
    code = ("import json, sys; from bench.launch.child import read_cells; h = read_cells(sys.argv[1]); "
            "print(json.dumps([h.matrix, str(h.opts.out), h.opts.command, "
            "[[c.id, c.axes, c.config.config_hash(), c.config.train.betas] for c in h.cells]]))")
    r = subprocess.run([sys.executable, "-c", code, str(path)], cwd=tmp_path, capture_output=True, text=True,
                       env={**ENV, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    name, out, command, got = json.loads(r.stdout)
    assert name == "m" and out == str(Path("rel").absolute()) and command == ["bench", "run", "--scale", "nano,micro"]
    want = [[c.id, [list(a) for a in c.axes], c.config.config_hash(), list(c.config.train.betas)] for c in cells]
    assert len(got) == len(cells) == 2 * 2 * 2 * 2 * 2 + 4 and got == want
    assert {c.config.train.betas for c in cells} == {(0.8, 0.9)}


def test_workers_out_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    r = bench_cli("run", *TINY, "--workers", "2", "--out", str(tmp_path / "file"))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    err = r.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "is a file" in err and "--out" in err


def test_a_launch_leaves_cells_held_by_another_run_and_starts_no_worker_for_them(tmp_path):
    """Another run holds both cells (live claims, this host): `bench run --workers 2`, twice, trains
    nothing, says the cells are left to the run training them and exits 0, not 'not finished'; it
    starts no worker (each would load the whole stack to skip them)."""
    from bench.run.engine.claims import acquire

    ids = [c["id"] for c in json.loads(bench_cli("plan", *SEL, "--json").stdout)["cells"]]
    claims = [acquire(tmp_path / "default" / cid) for cid in ids]
    try:
        runs = [bench_cli("run", *TINY, "--workers", "2", "--out", str(tmp_path)) for _ in range(2)]
    finally:
        for c in claims:
            c.release()
    for r in runs:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert "not finished" not in r.stdout + r.stderr
        assert "2 cell(s) left to the run training them" in " ".join(r.stderr.split())
        assert "0 cell(s) to train, 0 already done, 2 being trained by another run" in " ".join(r.stdout.split())
    assert not (tmp_path / "default" / ".workers").exists()


def test_a_child_loads_the_matrix_plugins_the_parent_loaded(tmp_path):
    """A matrix's own plugins (a .py path relative to the YAML) reach the children through the cells
    file: rebuilt in a fresh process started elsewhere, with no BENCH_PLUGINS, the plugin cells keep
    their ids and hashes (the hash covers the plugin's source)."""
    path = tmp_path / "cells.json"
    parent = ("import json, sys; from bench.commands.common import cells_from; from bench.commands.run import "
              "add_parser; import argparse; from bench.launch.child import write_cells; "
              "from bench.run.config.options import RunOptions; "
              "a = add_parser(argparse.ArgumentParser().add_subparsers()).parse_args([sys.argv[1]]); "
              "m, cells = cells_from(a); write_cells(sys.argv[2], m.name, cells, RunOptions()); "
              "print(json.dumps([[c.id, c.config.config_hash()] for c in cells]))")
    child = ("import json, sys; from bench.launch.child import read_cells; h = read_cells(sys.argv[1]); "
             "print(json.dumps([[c.id, c.config.config_hash()] for c in h.cells]))")
    env = {k: v for k, v in ENV.items() if k != "BENCH_PLUGINS"}
    env["PYTHONPATH"] = str(ROOT)
    a = subprocess.run([sys.executable, "-c", parent, str(ROOT / "examples" / "plugin" / "matrix.yaml"), str(path)],
                       cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert a.returncode == 0, a.stderr[-2000:]
    b = subprocess.run([sys.executable, "-c", child, str(path)], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=300)
    assert b.returncode == 0, b.stderr[-2000:]
    want = json.loads(a.stdout)
    assert json.loads(b.stdout) == want and any("relu2_glu" in cid for cid, _ in want)
