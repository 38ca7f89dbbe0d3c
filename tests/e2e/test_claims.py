"""Claims that know who holds them, tested with real processes on real namespaces: another host (a
UTS namespace with another hostname, as two machines on NFS), another pid namespace on the same
host (containers with host networking), a reused pid, a garbage claim file, a paused holder taken
over, a full disk, and `--wait` under signals.

The namespaces are made with ``unshare`` (root, as here and in CI); where it cannot run, the tests
that need it skip and say why."""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from bench.run.engine.claims import CLAIM, acquire, holder, identity, start_time

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                                     if p])}


def _unshare_works(*flags) -> str | None:
    """None when ``unshare FLAGS true`` runs here, else why not."""
    try:
        r = subprocess.run(["unshare", *flags, "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare cannot run here: {e}"
    return None if r.returncode == 0 else f"unshare {' '.join(flags)} needs privilege: {r.stderr.strip()}"


UTS = ["-u"]
PIDNS = ["--pid", "--fork", "--mount-proc", "--kill-child"]
needs_uts = pytest.mark.skipif(bool(_unshare_works(*UTS)), reason=str(_unshare_works(*UTS)))
needs_pidns = pytest.mark.skipif(bool(_unshare_works(*PIDNS)), reason=str(_unshare_works(*PIDNS)))


def in_namespace(flags: list[str], argv: list[str], hostname: str | None = None) -> list[str]:
    """``argv`` run by unshare in new namespaces (with ``hostname`` set inside a UTS one)."""
    script = (f"hostname {shlex.quote(hostname)} && " if hostname else "") + "exec " + shlex.join(argv)
    return ["unshare", *flags, "sh", "-c", script]


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def age_claim(folder: Path, seconds: float) -> None:
    """Make the claim's last heartbeat ``seconds`` older, as if its holder had been paused that long
    (the file's mtime; and the heartbeat field older versions kept in the file)."""
    path = Path(folder) / CLAIM
    data = json.loads(path.read_text())
    st = path.stat()
    if "heartbeat" in data:
        data["heartbeat"] -= seconds
        tmp = path.with_name(".aged")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    os.utime(path, (st.st_mtime - seconds, st.st_mtime - seconds))


def hold(folder: Path, flags: list[str] | None = None, beat: float = 1.0) -> subprocess.Popen:
    """A process holding ``folder``'s claim (heartbeat every ``beat`` s) until killed; it prints
    'HELD' once it has it."""
    argv = python(f"""
        import sys, time
        from bench.run.engine.claims import acquire
        claim = acquire({str(folder)!r}, stale_after={3 * beat}, beat={beat})
        print("HELD" if claim else "REFUSED", flush=True)
        time.sleep(3600)
    """)
    proc = subprocess.Popen(in_namespace(flags, argv) if flags else argv, stdout=subprocess.PIPE, text=True,
                            env=ENV, cwd=ROOT)
    assert proc.stdout.readline().strip() == "HELD"
    return proc


def try_acquire(folder: Path, flags: list[str] | None = None, stale_after: float = 3.0, beat: float = 1.0,
                hostname: str | None = None) -> str:
    """Another process's attempt at the claim: 'TAKEN ...messages' or 'REFUSED'."""
    argv = python(f"""
        from bench.run.engine.claims import acquire
        said = []
        claim = acquire({str(folder)!r}, stale_after={stale_after}, beat={beat}, log=said.append)
        print(("TAKEN " + " ".join(said)) if claim else "REFUSED", flush=True)
        if claim:
            claim.release()
    """)
    r = subprocess.run(in_namespace(flags, argv, hostname) if flags else argv, capture_output=True, text=True,
                       env=ENV, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


# ---- another pid namespace on the same host -------------------------------------------------------

@needs_pidns
def test_a_live_holder_in_another_pid_namespace_is_not_taken_over(tmp_path):
    """Same hostname, other pid namespace: the holder's pid means nothing there, so its heartbeat
    decides; a live holder (fresh heartbeat) keeps its claim from both sides, and once it dies its
    claim goes after the stale limit, not at once."""
    for holder_ns, challenger_ns in ((None, PIDNS), (PIDNS, None)):
        folder = tmp_path / f"cell-{bool(holder_ns)}"
        proc = hold(folder, holder_ns)
        try:
            for _ in range(2):  # across heartbeats
                assert try_acquire(folder, challenger_ns) == "REFUSED"
                time.sleep(1.2)
        finally:
            stop(proc)
        assert try_acquire(folder, challenger_ns, stale_after=30.0, beat=10.0) == "REFUSED"  # dead, not yet stale
        age_claim(folder, 60)
        assert try_acquire(folder, challenger_ns, stale_after=30.0, beat=10.0).startswith("TAKEN")


@needs_pidns
def test_a_holder_in_the_same_pid_namespace_is_checked_by_its_pid(tmp_path):
    """Inside one pid namespace (both in the same new one), a dead holder is seen dead at once."""
    script = python(f"""
        import subprocess, sys
        folder = {str(tmp_path / 'cell')!r}
        code = "from bench.run.engine.claims import acquire; import os; acquire(%r); os._exit(0)" % folder
        subprocess.run([sys.executable, "-c", code], check=True)
        from bench.run.engine.claims import acquire
        said = []
        claim = acquire(folder, log=said.append)
        print(("TAKEN " + " ".join(said)) if claim else "REFUSED")
    """)
    r = subprocess.run(in_namespace(PIDNS, script), capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("TAKEN") and "taking over" in r.stdout


# ---- a reused pid, another boot, a garbage file ---------------------------------------------------

def _claim_file(folder: Path, age: float, **fields) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    t = time.time() - age
    (folder / CLAIM).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": t,
                                            "heartbeat": t, "token": token, **fields}))
    os.utime(folder / CLAIM, (t, t))
    return token


def test_a_reused_pid_never_blocks_a_cell(tmp_path):
    """After a power loss the claim's pid may be an unrelated live process. A claim that names its
    holder's boot, namespace and start time is taken over at once when they do not match; one that
    does not name them (an older version's) by its heartbeat's age, never blocking for good."""
    from bench.launch.status import cell_states

    other = subprocess.Popen(["sleep", "600"])  # the unrelated process that got the pid
    boot, ns = identity()
    try:
        # an older claim file: host and pid only, the pid now another process's, 3606 s old
        _claim_file(tmp_path / "a", 3606, pid=other.pid)
        said = []
        claim = acquire(tmp_path / "a", log=said.append)
        assert claim is not None and "taking over" in said[0]
        claim.release()
        if boot is None:
            pytest.skip("no /proc here: a holder's boot and start time cannot be read")
        # this boot and namespace, the pid alive but started later than the holder did: dead at once
        _claim_file(tmp_path / "b", 0, pid=other.pid, boot_id=boot, pid_ns=ns, pid_start=start_time(other.pid) - 1)
        claim = acquire(tmp_path / "b", log=said.append)
        assert claim is not None
        claim.release()
        # another boot (the machine restarted): the heartbeat decides, whatever runs under that pid now
        _claim_file(tmp_path / "c", 10, pid=other.pid, boot_id="another-boot", pid_ns=ns,
                    pid_start=start_time(other.pid))
        assert acquire(tmp_path / "c") is None
        age_claim(tmp_path / "c", 400)
        claim = acquire(tmp_path / "c", log=said.append)
        assert claim is not None
        claim.release()
        # `bench status` says what a rerun will do with such a claim: stale, not running
        _claim_file(tmp_path / "m" / "x", 3606, pid=other.pid)

        class Cell:
            id = "x"

        (row,) = cell_states(tmp_path, "m", [Cell()])
        assert row["state"] == "stale claim", row
    finally:
        stop(other)


@pytest.mark.parametrize("content", [b"", b"{", b"\x00\xff" * 40, b'{"host": 1}', b"[]",
                                     b'{"host": "h", "pid": "1", "started": 0, "token": "t"}'],
                         ids=["empty", "cut", "binary", "fields", "list", "types"])
def test_a_garbage_claim_file_is_taken_over_at_once(tmp_path, content):
    """No live holder leaves garbage as claim.json (claims are written whole, then linked; a holder
    that finds garbage there takes itself for lost): taken over at once, with a message saying why."""
    (tmp_path / CLAIM).write_bytes(content)  # fresh: mtime now
    said = []
    claim = acquire(tmp_path, log=said.append)
    assert claim is not None and "unreadable claim" in said[0]
    assert len(said[0]) < 300  # a short reason, not the file
    claim.release()


def test_a_holder_finding_garbage_in_its_place_takes_itself_for_lost(tmp_path):
    claim = acquire(tmp_path, stale_after=3 * 3600, beat=3600)
    (tmp_path / CLAIM).write_bytes(b"\x00garbage")
    assert not claim.refresh() and claim.lost
    claim.release()
    assert (tmp_path / CLAIM).read_bytes() == b"\x00garbage"  # not its own: left alone


# ---- the heartbeat never undoes a takeover -------------------------------------------------------

def test_a_heartbeat_never_replaces_a_claim_taken_over_meanwhile(tmp_path, monkeypatch):
    """The holder reads its claim (still its own), is paused, another run takes the claim over, the
    holder resumes: its heartbeat must not put its own claim back over the new holder's."""
    from bench.run.engine import claims

    old = acquire(tmp_path, stale_after=3 * 3600, beat=3600)
    real_read, taken = claims._read, {}

    def read_then_taken_over(path):
        found = real_read(path)
        if not taken and found is not None and found.token == old.info.token:
            (tmp_path / CLAIM).unlink()  # another run's takeover, between the holder's read and its write
            taken["token"] = _claim_file(tmp_path, 0, host="elsewhere")
        return found

    monkeypatch.setattr(claims, "_read", read_then_taken_over)
    old.refresh()
    monkeypatch.undo()
    assert holder(tmp_path).token == taken["token"]
    assert not old.refresh() and old.lost
    old.release()
    assert holder(tmp_path).token == taken["token"]


def _mount_tmpfs(path: Path, opts: str):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")


def fill_disk(disk: Path) -> None:
    """Fill a filesystem to the last byte."""
    fd = os.open(disk / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        for size in (1 << 16, 1 << 10, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def test_heartbeats_and_claims_on_a_full_disk_leave_no_temp_files(tmp_path):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=64k")
    try:
        claim = acquire(disk / "cell", stale_after=3 * 3600, beat=3600)
        fill_disk(disk)
        for _ in range(3):
            claim.refresh()
        assert holder(disk / "cell").token == claim.info.token and not claim.lost
        assert holder(disk / "cell").age() < 5  # the heartbeat needs no space
        with pytest.raises(OSError):  # a second claim cannot be written: said, and nothing left behind
            acquire(disk / "other")
        assert sorted(p.name for p in (disk / "cell").iterdir()) == [CLAIM]
        assert not list((disk / "other").iterdir())
        claim.release()
    finally:
        subprocess.run(["umount", str(disk)])


# ---- another host: a takeover leaves the old holder nothing to write -----------------------------

STEPS = 40
ARGS = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--train.probe_every", "0",
        "--train.max_steps", str(STEPS), "--train.val_every", "10", "--train.log_every", "1",
        "--train.throughput_warmup", "1", "--train.val_tokens", "4096", "--ckpt-every", "5", "--quiet"]


def bench_argv(*args) -> list[str]:
    return [sys.executable, "-m", "bench.cli", *args]


def wait_for_line(proc, needle: str, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if needle in line:
            return "".join(seen)
        assert time.monotonic() < deadline, f"no {needle!r} in {timeout} s: {''.join(seen)[-2000:]}"
    raise AssertionError(f"ended (rc {proc.wait()}) before {needle!r}: {''.join(seen)[-3000:]}")


def curve_steps(folder: Path) -> list[int]:
    import csv

    with open(folder / "metrics.csv", newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def ckpt_step(path: Path) -> int | None:
    """The step a checkpoint was saved at; None when there is none."""
    import torch

    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["global_step"])


@needs_uts
@pytest.mark.slow
def test_a_takeover_from_another_host_leaves_the_old_holder_nothing_to_write(tmp_path):
    """A pauses in validation at step 10 (its step-10 checkpoint pending); B, on another host, takes
    the claim over once A's heartbeat is past --stale-after and resumes from step 5; A resumes while
    B is held at step 30. A must neither save its step-10 checkpoint over B's nor append a row to
    B's curve: it stops, saying its claim was taken over."""
    out = tmp_path / "out"
    a = subprocess.Popen(bench_argv("run", *ARGS, "--out", str(out)), cwd=ROOT, text=True, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env={**ENV, "BENCH_PAUSE_AT": "validation@10",
                                                      "BENCH_PAUSE_SECONDS": "5"})
    b = None
    try:
        wait_for_line(a, "PAUSED AT validation@10")
        os.kill(a.pid, signal.SIGSTOP)  # its heartbeat thread stops too
        (cell,) = out.glob("default/*/claim.json")
        cell = cell.parent
        assert ckpt_step(cell / "checkpoints" / "latest.ckpt") == 5
        age_claim(cell, 1000)  # A has been paused past any stale limit
        b = subprocess.Popen(in_namespace(UTS, bench_argv("run", *ARGS, "--out", str(out), "--stale-after", "90"),
                                          hostname="otherhost"), cwd=ROOT, text=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env={**ENV, "BENCH_PAUSE_AT": "validation@30",
                                                          "BENCH_PAUSE_SECONDS": "60"})
        wait_for_line(b, "PAUSED AT validation@30")
        assert holder(cell).host == "otherhost"  # B took the claim over
        before = (cell / "metrics.csv").read_bytes()
        b_ckpt = ckpt_step(cell / "checkpoints" / "latest.ckpt")
        steps = curve_steps(cell)
        assert b_ckpt == 25 and steps == sorted(steps) and steps[-1] < 30  # its step-30 save waits for validation

        os.kill(a.pid, signal.SIGCONT)  # A wakes up in its validation at step 10
        a_err = a.stderr.read()
        assert a.wait(timeout=120) == 0, a_err
        assert ckpt_step(cell / "checkpoints" / "latest.ckpt") == b_ckpt  # not rolled back to 10
        assert (cell / "metrics.csv").read_bytes() == before  # no row of A's appended
        assert holder(cell).host == "otherhost"
        assert "taken over" in a_err and "Traceback" not in a_err
        assert json.loads((cell / "record.json").read_text())["status"] == "running"  # B's, still training
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
                p.wait()


# ---- --wait honours signals ---------------------------------------------------------------------

@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_wait_stops_at_once_on_a_signal_and_takes_no_claim(tmp_path, sig, code):
    from bench.run.config.matrix import expand, load_matrix

    (cell,) = expand(load_matrix(None), {"train.max_steps": "2"}, {"scale": ["nano"], "activation": ["swiglu"],
                                                                   "norm": ["pre"], "seed": [0]})
    folder = tmp_path / "default" / cell.id
    ours = acquire(folder, stale_after=3 * 3600, beat=3600)  # a live holder: this test
    try:
        proc = subprocess.Popen(bench_argv("run", "--scale", "nano", "--activation", "swiglu", "--norm", "pre",
                                           "--seed", "0", "--train.max_steps", "2", "--wait", "--quiet",
                                           "--out", str(tmp_path)), cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        for line in proc.stdout:
            if "waiting for" in line:
                break
        else:
            pytest.fail(f"the run never waited (rc {proc.wait()}): {proc.stderr.read()}")
        time.sleep(0.5)
        t = time.monotonic()
        os.kill(proc.pid, sig)
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{signal.Signals(sig).name} did not end the wait within 15 s")
        err = proc.stderr.read()
        assert rc == code and time.monotonic() - t < 10, err
        assert "Traceback" not in err and "rerun" in err
        assert holder(folder).token == ours.info.token and ours.held()  # no claim taken
        assert not (folder / "record.json").exists()
    finally:
        ours.release()
