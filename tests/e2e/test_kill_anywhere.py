"""A cell killed with SIGKILL at any instant of its life resumes to the same result.

Property: for every kill instant (a fault point of bench/faults.py at a given step, reached
deterministically, or a random moment in real time), killing the cell's process there and running
the lifecycle again (claim, train, record, release) ends with a record and a metrics.csv equal to
an uninterrupted run's, wall-clock fields aside. Chains kill the resumed runs too.

Each run is a fork of this process (the imports, the prepared data and the measurements every run
makes are paid once), killed by a real SIGKILL: no finally block, no flush, no atexit runs in it.
"""

import csv
import faulthandler
import io
import json
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import pytest

from bench.run.config.presets import resolve
from bench.run.config.matrix import Cell, cell_id

STEPS = 6
SETTINGS = {"scale": "nano", "activation": "swiglu", "norm": "pre", "train.max_steps": STEPS, "train.val_every": 4,
            "train.log_every": 1, "train.throughput_warmup": 1, "train.val_tokens": 4096, "train.probe_every": 3}
CKPT_EVERY = 2

# measured, not computed: their values differ between any two runs
WALL = {"started", "ended", "wall_seconds", "resumed_from", "resumed_from_step", "sharing", "command"}
WALL_METRICS = {"tokens_per_sec", "tokens_per_sec_per_device", "mfu", "flops_per_sec", "train_seconds",
                "steady_steps", "throughput_segments", "peak_memory_bytes", "tokens_per_sec_basis",
                "peak_flops", "val_seconds", "eval_share"}  # on CPU, peak FLOP/s is measured

# every fault point, at every step it is reached at: the whole life of a cell of 6 steps that
# validates at 4 (in fit: the checkpoint waits for it) and 6 (the final validation, after fit: the
# last checkpoint is taken before it), probes at 0, 3, 5 and saves a checkpoint at 2, 4, 6
POINTS = ["claimed", "running-record",
          *[f"train-batch@{s}" for s in range(1, STEPS + 1)],
          "validation@4", "validation@6",
          *[f"checkpoint-{w}@{s}" for w in ("written", "saved") for s in (2, 4, 6)],
          "checkpoint-rotated@4", "checkpoint-rotated@6",
          "final-checkpoint", "probes", "record", "record-written", "checkpoints-removed", "released",
          # between an atomic write's fsync and its rename, at each of the life's four: the running
          # record, metrics.csv rewritten twice for new columns, the final record
          *[f"temp-written#{n}" for n in range(1, 5)]]
# kills of the resumed runs too: each run of a chain dies at the next instant
CHAINS = [["final-checkpoint", "final-checkpoint"], ["checkpoint-saved@6", "probes", "record"],
          ["train-batch@3", "validation@4", "checkpoint-saved@4"], ["checkpoint-written@4", "record-written"],
          ["validation@6", "probes", "checkpoints-removed"]]
RANDOM_KILLS = 6
# a run that outlives this is hung, not slow (one takes a few seconds): its stacks are printed
HUNG_AFTER = 180


def nano() -> Cell:
    cfg = resolve(dict(SETTINGS))
    return Cell(cell_id(cfg, {}), cfg, ())


@pytest.fixture(scope="module")
def data():
    """The prepared data, and what every run measures once per process, measured here once for every
    fork: the FLOP count, and the CPU's matmul peak at the forks' one thread (a second each run)."""
    import torch

    from bench.run.engine.callbacks import flops_per_batch
    from bench.run.engine.environment import DataCache
    from bench.run.engine.system import cpu_matmul_peak

    cfg = nano().config
    flops_per_batch(cfg.model, cfg.train.batch_size, cfg.model.block_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cpu_matmul_peak()
    finally:
        torch.set_num_threads(threads)
    return DataCache().get(cfg)


def lifecycle(out: Path, dm, kill: str | None = None, delay: float | None = None) -> int:
    """One run of the cell's lifecycle in a forked process; its exit status (-9: killed)."""
    pid = os.fork()
    if pid == 0:  # the child: run, never return into pytest
        code = 1
        try:
            faulthandler.enable(all_threads=True)  # SIGABRT from the parent prints every thread's stack
            # GNU OpenMP's thread pool does not survive fork: a child of a parent that has run a
            # parallel op hangs in its first one. One thread never enters the pool.
            import torch

            torch.set_num_threads(1)
            if kill:
                os.environ["BENCH_KILL_AT"] = kill
            from bench.run.engine.cell import CellRun
            from bench.run.config.options import RunOptions

            cell = nano()
            life = CellRun("m", [cell], RunOptions(out=out, quiet=True, ckpt_every=CKPT_EVERY), warn=lambda m: None)
            life.data.get = lambda cfg: dm
            rec = life.run(cell)
            code = 0 if rec is not None and rec.status == "ok" else 3
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    return reap(pid)


def reap(pid: int) -> int:
    """The child's exit status; a child still running after HUNG_AFTER s fails the test, stacks printed."""
    deadline = time.monotonic() + HUNG_AFTER
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGABRT)
    time.sleep(2)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"a run of the cell hung for {HUNG_AFTER} s (its stacks are above)")


def folder(out: Path) -> Path:
    (path,) = Path(out).glob("m/*/record.json")
    return path.parent


def comparable(out: Path) -> tuple[dict, list]:
    """The record and curve with the wall-clock fields removed."""

    rec = json.loads((folder(out) / "record.json").read_text())
    rec = {k: v for k, v in rec.items() if k not in WALL}
    rec["metrics"] = {k: v for k, v in rec["metrics"].items() if k not in WALL_METRICS}
    for part in ("probes", "outliers"):  # their cost is timed
        rec[part] = {k: v for k, v in rec[part].items() if not k.startswith("overhead")}
    rec["environment"] = {k: v for k, v in rec["environment"].items() if k not in ("load", "memory")}
    with open(folder(out) / "metrics.csv", newline="") as f:
        rows = list(csv.reader(io.StringIO(f.read())))
    t = rows[0].index("time/train_seconds")
    return rec, [[v if i != t else bool(v) for i, v in enumerate(r)] for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("straight")
    t = time.perf_counter()
    assert lifecycle(out, data) == 0
    return comparable(out), time.perf_counter() - t, out


def check_one_curve(out: Path) -> None:
    """What a reader finds at any instant: one metrics.csv (no parts), each column's steps strictly
    ascending (each step at most once), the rows' steps in order."""
    found = list(Path(out).glob("m/*/metrics*.csv"))
    assert [p.name for p in found] in ([], ["metrics.csv"])
    if not found:
        return
    with open(found[0], newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps)
    for column in (rows[0].keys() if rows else ()):
        if column not in ("step", "epoch"):
            filled = [int(r["step"]) for r in rows if r[column]]
            assert filled == sorted(set(filled)), column


FINISHED = ("record-written", "checkpoints-removed", "released")  # the final record is in place


def check_killed_record(out: Path, point: str) -> None:
    """A killed run's record says `running` (never read as complete) until its final record is in place."""
    statuses = [json.loads(p.read_text())["status"] for p in Path(out).glob("m/*/record.json")]
    assert statuses in ([["ok"]] if point.split("@")[0] in FINISHED else [[], ["running"]]), (point, statuses)


def check_resumes_to_reference(out: Path, data, reference) -> None:
    assert lifecycle(out, data) == 0  # the rerun that finishes the cell
    (ref_rec, ref_curve), _, ref_out = reference
    rec, curve = comparable(out)
    assert curve == ref_curve
    assert rec == ref_rec

    full = json.loads((folder(out) / "record.json").read_text())
    m = full["metrics"]
    assert m.get("tokens_per_sec") or "not measured" in m["tokens_per_sec_basis"]  # never empty without why
    assert m["train_seconds"] > 0
    assert not (folder(out) / "claim.json").exists() and not (folder(out) / "checkpoints").exists()
    assert not list(folder(out).glob("metrics.part-*")) and not list(folder(out).glob(".*tmp"))
    # the time axis continues across resumes: it rises with the steps, as in the uninterrupted run
    with open(folder(out) / "metrics.csv", newline="") as f:
        times = [float(r["time/train_seconds"]) for r in csv.DictReader(f) if r["time/train_seconds"]]
    assert times == sorted(times) and len(times) == 2
    assert m["train_seconds"] == pytest.approx(times[-1], rel=1e-5)  # the record continues the clock too


@pytest.mark.parametrize("chain", [[p] for p in POINTS] + CHAINS, ids=lambda c: "+".join(c))
def test_kill_at_a_fault_point_then_rerun_matches_the_uninterrupted_run(tmp_path, data, reference, chain):
    for point in chain:
        assert lifecycle(tmp_path, data, kill=point) == -signal.SIGKILL, f"never reached {point}"
        check_one_curve(tmp_path)
        check_killed_record(tmp_path, point)
    check_resumes_to_reference(tmp_path, data, reference)


@pytest.mark.parametrize("seed", range(RANDOM_KILLS))
def test_kill_at_a_random_moment_then_rerun_matches_the_uninterrupted_run(tmp_path, data, reference, seed):
    _, seconds, _ = reference
    delay = random.Random(seed).uniform(0.05, seconds)
    code = lifecycle(tmp_path, data, delay=delay)
    assert code in (0, -signal.SIGKILL)
    check_one_curve(tmp_path)
    check_resumes_to_reference(tmp_path, data, reference)


def test_a_partly_resumed_curve_is_one_file_with_each_step_once(tmp_path, data, reference):
    """Killed after step 3 (checkpoint at 2), resumed and killed again in step 5 (checkpoint and
    validation at 4 done, step 5's row not yet logged): the curve so far is the reference's rows
    up to the validation after step 4, once each, in its order."""
    assert lifecycle(tmp_path, data, kill="train-batch@3") == -signal.SIGKILL
    assert lifecycle(tmp_path, data, kill="train-batch@5") == -signal.SIGKILL
    check_one_curve(tmp_path)
    (_, ref_curve), _, _ = reference
    with open(next(Path(tmp_path).glob("m/*/metrics.csv")), newline="") as f:
        rows = list(csv.reader(f))
    t = rows[0].index("time/train_seconds")
    rows = [[v if i != t else bool(v) for i, v in enumerate(r)] for r in rows]
    # a row logged at step k is the (k+1)-th step's; compared on the columns filled
    ref = [dict(zip(ref_curve[0], r)) for r in ref_curve[1:]]
    got = [dict(zip(rows[0], r)) for r in rows[1:]]
    assert [int(r["step"]) for r in got] == [int(r["step"]) for r in ref[:len(got)]]
    assert int(got[-1]["step"]) == 3 and got[-1]["val/loss"]
    filled = lambda row: {k: v for k, v in row.items() if v not in ("", False)}  # noqa: E731
    assert [filled(g) for g in got] == [filled(r) for r in ref[:len(got)]]
    check_resumes_to_reference(tmp_path, data, reference)


def test_the_property_covers_the_whole_life():
    instants = len(POINTS) + sum(len(c) for c in CHAINS) + RANDOM_KILLS
    assert instants >= 30
    assert {"final-checkpoint", "probes", "record", "record-written", "checkpoints-removed"} <= set(POINTS)
