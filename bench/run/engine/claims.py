"""Claims: "claim, train, record, release". A cell being trained holds ``claim.json`` in its results
folder, so that two runs (two shells, two local workers, two SLURM jobs) never train it together.

Designed for a shared filesystem (NFS, Lustre): nothing relies on one machine's process table alone.
- Taking a claim is atomic: the claim is written in full to a unique temp file, then ``os.link``-ed
  to ``claim.json``; link fails if the name exists, also over NFS (where O_EXCL was historically not).
- The holder refreshes a heartbeat time in the file from a daemon thread (every ``beat`` seconds),
  by writing a temp file and renaming it over the claim (readers see the old or the new one).
- A claim held on this host is judged by its pid alone: stale at once when the pid is dead, never
  while it lives (a paused or swapping holder is still the holder). A claim held on another host
  is stale when its heartbeat is older than ``stale_after`` seconds, which may not be set below
  ``MIN_BEATS`` heartbeats (a slow filesystem must not make a live holder look dead).
- A holder that finds its claim taken over sets ``lost``; the runner stops the cell at the next
  step (ClaimGuard) and leaves it, checkpoint and curve, to the new holder.
- Taking over a stale claim happens under a short ``claim.json.takeover`` lock (itself taken with
  ``os.link``), re-checking the claim under the lock, so two runs cannot both take it over.

    claim = acquire(folder)          # None: a live holder has it (see holder(folder))
    if claim is not None:
        with claim:                  # released on every exit path
            ...
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import ConfigError

CLAIM = "claim.json"
STALE_AFTER = 300.0  # seconds without a heartbeat before another host may take a claim over
BEAT = 30.0  # seconds between heartbeats
TAKEOVER_STALE = 60.0  # a takeover lock older than this was left by a killed process
MIN_BEATS = 3  # stale_after must span at least this many heartbeats


def check_stale_after(stale_after: float, beat: float = BEAT) -> None:
    """One line when the stale limit is too short to tell a live holder from a dead one."""
    if not stale_after >= MIN_BEATS * beat:
        raise ConfigError(f"--stale-after {stale_after:g} is too short: a claim refreshes its heartbeat every "
                          f"{beat:g} s, so give at least {MIN_BEATS * beat:g} s ({MIN_BEATS} heartbeats)")


@dataclass
class ClaimInfo:
    """What a claim file says about its holder."""

    host: str
    pid: int
    started: float  # unix time the claim was taken
    heartbeat: float  # unix time the holder last refreshed it
    token: str  # unique per claim: a holder recognises its own file
    command: str = ""

    def age(self, now: float | None = None) -> float:
        """Seconds since the last heartbeat."""
        return (time.time() if now is None else now) - self.heartbeat

    def alive_here(self) -> bool | None:
        """True/False when the holder ran on this host (its pid is checked), None for another host."""
        if self.host != socket.gethostname():
            return None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # exists, another user's
            return True
        return True

    def is_stale(self, stale_after: float = STALE_AFTER) -> bool:
        alive = self.alive_here()
        return not alive if alive is not None else self.age() > stale_after

    def describe(self) -> str:
        started = dt.datetime.fromtimestamp(self.started, dt.timezone.utc).isoformat(timespec="seconds")
        return f"{self.host} pid {self.pid} since {started}, heartbeat {self.age():.0f} s ago"


def _read(path: Path) -> ClaimInfo | None:
    try:
        data = json.loads(path.read_text())
        return ClaimInfo(**{k: data[k] for k in ("host", "pid", "started", "heartbeat", "token")},
                         command=str(data.get("command", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # unreadable or half-written by a foreign tool
        try:
            mtime = path.stat().st_mtime  # judge it by its age alone
        except FileNotFoundError:
            return None
        return ClaimInfo(host="?", pid=-1, started=mtime, heartbeat=mtime, token="unreadable")


def holder(folder: Path) -> ClaimInfo | None:
    """The current claim on ``folder`` (live or stale: see ``ClaimInfo.is_stale``), None if unclaimed."""
    return _read(Path(folder) / CLAIM)


def _write_tmp(folder: Path, info: ClaimInfo) -> Path:
    tmp = folder / f".{CLAIM}.{info.token}.{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as f:
        json.dump(asdict(info), f)
        f.flush()
        os.fsync(f.fileno())
    return tmp


def _link_new(folder: Path, info: ClaimInfo, target: Path | None = None) -> bool:
    """Atomically create ``target`` (default ``folder/claim.json``) holding ``info``; False when it exists."""
    tmp = _write_tmp(folder, info)
    try:
        os.link(tmp, target or folder / CLAIM)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


class Claim:
    """A held claim: refreshed by a daemon thread until ``release()`` (or the end of a ``with``)."""

    def __init__(self, folder: Path, info: ClaimInfo, beat: float = BEAT):
        self.folder, self.info, self.beat = Path(folder), info, beat
        self.lost = False  # set when someone else took the claim over (we looked stale to them)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"claim-heartbeat {self.folder.name}", daemon=True)
        self._thread.start()

    @property
    def path(self) -> Path:
        return self.folder / CLAIM

    def _run(self):
        while not self._stop.wait(self.beat):
            self.refresh()

    def refresh(self) -> bool:
        """Write a new heartbeat; False (and ``lost``) if the file is no longer ours."""
        current = _read(self.path)
        if current is None or current.token != self.info.token:
            if not self.lost:
                print(f"warning: claim on {self.folder} was taken over by "
                      f"{current.describe() if current else 'nobody (removed)'}", file=sys.stderr)
            self.lost = True
            return False
        self.info.heartbeat = time.time()
        try:
            os.replace(_write_tmp(self.folder, self.info), self.path)
        except OSError:  # a full disk must not kill the run: the claim just ages
            return False
        return True

    def release(self) -> None:
        """Stop the heartbeat and remove the claim if it is still ours. Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        current = _read(self.path)
        if current is not None and current.token == self.info.token:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(folder: Path, stale_after: float = STALE_AFTER, beat: float = BEAT, command: str | None = None,
            log=None) -> Claim | None:
    """Claim ``folder`` (created if missing). None when a live holder has it; a stale claim is taken
    over (atomically, with a message through ``log``, default stderr)."""
    check_stale_after(stale_after, beat)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    now = time.time()
    info = ClaimInfo(host=socket.gethostname(), pid=os.getpid(), started=now, heartbeat=now,
                     token=uuid.uuid4().hex, command=" ".join(sys.argv) if command is None else command)
    if _link_new(folder, info):
        return Claim(folder, info, beat)
    current = _read(folder / CLAIM)
    if current is not None and not current.is_stale(stale_after):
        return None
    # stale (or vanished meanwhile): take it over under the takeover lock, re-checking under it
    lock = folder / f"{CLAIM}.takeover"
    lock_info = ClaimInfo(info.host, info.pid, now, now, info.token)
    if not _link_new(folder, lock_info, lock):
        try:
            if time.time() - lock.stat().st_mtime > TAKEOVER_STALE:
                lock.unlink(missing_ok=True)  # left by a process killed mid-takeover; try again next time
        except FileNotFoundError:
            pass
        return None
    try:
        again = _read(folder / CLAIM)
        if again is not None:
            if current is None or again.token != current.token or not again.is_stale(stale_after):
                return None  # someone else took it (or refreshed it) meanwhile
            (folder / CLAIM).unlink(missing_ok=True)
            log(f"taking over the stale claim on {folder} ({again.describe()})")
        return Claim(folder, info, beat) if _link_new(folder, info) else None
    finally:
        lock.unlink(missing_ok=True)


def wait_for(folder: Path, stale_after: float = STALE_AFTER, poll: float = 5.0, beat: float = BEAT,
             log=None) -> Claim:
    """Block until ``folder`` can be claimed (its holder finished, or died and went stale)."""
    while True:
        claim = acquire(folder, stale_after=stale_after, beat=beat, log=log)
        if claim is not None:
            return claim
        time.sleep(poll)
