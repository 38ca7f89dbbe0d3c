"""A cell's lifecycle beyond kills: checkpoints that cannot be loaded, full disks, claims, the
train clock and what it holds out, and what the record says about sharing and axis order."""

import errno
import json
import os
import socket
import time
import uuid
from pathlib import Path

import pytest
import torch

from bench.errors import ConfigError
from bench.run import checkpoints
from bench.run.checkpoints import LATEST, PREVIOUS, AtomicCheckpointIO, find_resume
from bench.run.claims import BEAT, CLAIM, acquire, check_stale_after
from bench.run.config import resolve
from bench.run.matrix import Cell, cell_id
from bench.run.runner import RunOptions, train_cell


def nano_cell(**settings) -> Cell:
    base = {"scale": "nano", "train.max_steps": 6, "train.val_every": 3, "train.warmup_steps": 2,
            "train.throughput_warmup": 1, "train.log_every": 1, "data.ood_corpus": None, "train.probe_every": 0}
    cfg = resolve({**base, **settings})
    return Cell(cell_id(cfg, {}), cfg, ())


# ---- checkpoints -------------------------------------------------------------------------------

class Unloadable:
    """Pickles fine, cannot be unpickled: its class is gone when the checkpoint is read."""


def test_a_checkpoint_that_passes_its_crc_but_cannot_be_unpickled_is_set_aside(tmp_path, monkeypatch):
    io_ = AtomicCheckpointIO()
    io_.save_checkpoint({"state_dict": {}, "global_step": 1}, tmp_path / LATEST)
    io_.save_checkpoint({"state_dict": {}, "global_step": 2, "x": Unloadable()}, tmp_path / LATEST)
    monkeypatch.delattr(__import__(__name__), "Unloadable")
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

def _foreign_claim(folder: Path, host: str, pid: int, age: float) -> None:
    t = time.time() - age
    (folder / CLAIM).write_text(json.dumps({"host": host, "pid": pid, "started": t, "heartbeat": t,
                                            "token": uuid.uuid4().hex}))


def test_a_live_holder_on_this_host_is_never_taken_over_however_old_its_heartbeat(tmp_path):
    _foreign_claim(tmp_path, socket.gethostname(), os.getpid(), age=10 * 3600)  # alive: this process
    assert acquire(tmp_path, stale_after=3 * BEAT) is None
    _foreign_claim(tmp_path, socket.gethostname(), 2**22 + 12345, age=0)  # a pid that does not exist
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
    cell = nano_cell(**{"train.max_steps": 40, "train.val_every": 100})
    folder = tmp_path / "t" / cell.id
    claim = acquire(folder, stale_after=3 * 3600, beat=3600)
    claim.lost = True  # as refresh() finds it when another run took the claim over
    messages = []
    rec = train_cell(cell, "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0), warn=messages.append,
                     claim=claim)
    assert rec.status == "lost" and "taken over" in messages[0]
    on_disk = json.loads((folder / "record.json").read_text())
    assert on_disk["status"] == "running"  # the record is left to the new holder
    curve = folder / "metrics.csv"
    assert not curve.exists() or len(curve.read_text().splitlines()) <= 2  # stopped at its first step
    claim.release()


# ---- the train clock ---------------------------------------------------------------------------

def test_checkpoint_saves_and_probes_are_held_out_of_the_train_clock(tmp_path, tiny_dm, monkeypatch):
    from bench.run.probes import Probes

    base = train_cell(nano_cell(), "t", tiny_dm, RunOptions(out=tmp_path / "a", quiet=True, ckpt_every=0))
    real_save, real_sample = AtomicCheckpointIO.save_checkpoint, Probes._sample

    pause = 1.5  # long against the machine's noise: the two runs are compared by their clocks

    def slow_save(self, *a, **k):
        time.sleep(pause)
        return real_save(self, *a, **k)

    def slow_sample(self, *a, **k):
        time.sleep(pause)
        return real_sample(self, *a, **k)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", slow_save)
    monkeypatch.setattr(Probes, "_sample", slow_sample)
    rec = train_cell(nano_cell(**{"train.probe_every": 2}), "t", tiny_dm,
                     RunOptions(out=tmp_path / "b", quiet=True, ckpt_every=1))
    assert rec.status == "ok"
    # 6 saves and 4 probe samples slept 15 s in all; a clock that counted them would show it
    assert rec.metrics.train_seconds < base.metrics.train_seconds + 5 * pause
    assert rec.metrics.tokens_per_sec > base.metrics.tokens_per_sec / 3


def test_throughput_pools_every_segment_and_says_why_when_none_measured():
    from bench.run.callbacks import pooled_series, steady_state

    series = pooled_series([(1.0, 10), (3.0, 10)])  # two segments: 20 batches in 4 s
    out = steady_state(series, tokens=100, samples=1, flops=1.0, peak_flops=None)
    assert out["tokens_per_sec"] == pytest.approx(20 * 100 / 4.0)
    assert pooled_series([]) == [] and pooled_series([(0.0, 0)]) == []


def test_a_cell_too_short_for_its_warmup_says_why_it_has_no_tokens_per_sec(tmp_path, tiny_dm):
    rec = train_cell(nano_cell(**{"train.throughput_warmup": 50}), "t", tiny_dm,
                     RunOptions(out=tmp_path, quiet=True, ckpt_every=0))
    assert rec.status == "ok" and rec.metrics.tokens_per_sec is None
    assert "not measured" in rec.metrics.extra["tokens_per_sec_basis"]


# ---- what the record says ----------------------------------------------------------------------

def test_the_record_says_how_shared_the_machine_was_and_the_axis_order(tmp_path, tiny_dm, monkeypatch):
    monkeypatch.setenv("BENCH_WORKERS", "2")
    order = {"activation": ["swiglu", "gelu"]}
    rec = train_cell(nano_cell(), "t", tiny_dm, RunOptions(out=tmp_path, quiet=True, ckpt_every=0, axis_order=order))
    on_disk = json.loads(rec.path.read_text())
    s = on_disk["sharing"]
    assert s["cpu_count"] == os.cpu_count() and s["threads"] == torch.get_num_threads() and s["workers"] == 2
    assert s["shared"] is True and isinstance(s["load_avg_1m"], float)
    assert on_disk["axis_order"] == order


def test_axis_order_follows_the_expanded_matrix():
    from bench.run.cell import axis_order

    cells = [Cell(f"c{i}", None, (("activation", a), ("norm", n)))
             for i, (a, n) in enumerate([("swiglu", "pre"), ("gelu", "pre"), ("swiglu", "post")])]
    assert axis_order(cells) == {"activation": ["swiglu", "gelu"], "norm": ["pre", "post"]}
