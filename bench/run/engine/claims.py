"""Claims: "claim, train, record, release". A cell being trained holds ``claim.json`` in its results
folder, so that two runs (two shells, two local workers, two SLURM jobs) never train it together.

Designed for a shared filesystem (NFS, Lustre): nothing relies on one machine's process table alone.
- Taking a claim is atomic: the claim is written in full to a unique temp file, then ``os.link``-ed
  to ``claim.json``; link fails if the name exists, also over NFS (where O_EXCL was historically not).
- The claim names its holder: host, boot id, pid namespace, and pid with its start time. The holder
  is judged alive only when all of them match this process's view (same host, same boot, same pid
  namespace) and the pid still runs with that start time; it is judged dead at once when they all
  match but the pid is gone or belongs to a later process (a reused pid). Any other claim (another
  host, another boot, another pid namespace, a claim without those fields) is judged by its
  heartbeat: stale when older than ``stale_after`` seconds, which may not be set below ``MIN_BEATS``
  heartbeats (a slow filesystem must not make a live holder look dead).
- The heartbeat is the file's modification time, which the holder sets every ``beat`` seconds from a
  daemon thread (``os.utime``, the holder's clock). It never rewrites the file: a holder that was
  paused while another took its claim over can only touch the new holder's file, never replace it,
  and a full disk cannot fail a heartbeat.
- A ``claim.json`` that cannot be read as a claim was not written by a live holder (claims are
  written whole, then linked or renamed into place, and a holder that reads garbage in its place
  takes itself for lost): it is taken over at once.
- A holder re-reads its claim before every checkpoint save, curve write and record write
  (``held``/``ensure``); once another run has taken it over it writes nothing more. The heartbeat
  thread also notices (``lost``); the runner then stops the cell at the next step (ClaimGuard).
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

from ...atomic import remove_older
from ...errors import ConfigError
from ..config.options import STALE_AFTER

CLAIM = "claim.json"
BEAT = 30.0  # seconds between heartbeats
TAKEOVER_STALE = 60.0  # a takeover lock older than this was left by a killed process
MIN_BEATS = 3  # stale_after must span at least this many heartbeats
TEMP_PREFIX = f".{CLAIM}."  # the temp files a claim is written through before its link
TEMP_STALE = 60.0  # a claim temp file older than this was left by a killed writer


class ClaimLost(RuntimeError):
    """Another run took this cell's claim over: this run stops, writes nothing more and leaves the cell to it."""


def check_stale_after(stale_after: float, beat: float = BEAT) -> None:
    """One line when the stale limit is too short to tell a live holder from a dead one."""
    if not stale_after >= MIN_BEATS * beat:
        raise ConfigError(f"--stale-after {stale_after:g} is too short: a claim refreshes its heartbeat every "
                          f"{beat:g} s, so give at least {MIN_BEATS * beat:g} s ({MIN_BEATS} heartbeats)")


# ---- who a process is: boot, pid namespace, pid start time (Linux /proc; None elsewhere) ----------

def start_time(pid: int) -> int | None:
    """Clock ticks after boot at which process ``pid`` started (/proc/<pid>/stat field 22); None when
    there is no such process (or no /proc)."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])  # fields after the command name start at 3
    except (OSError, ValueError, IndexError, OverflowError):
        return None


_IDENTITY: dict[int, tuple[str | None, int | None]] = {}


def identity() -> tuple[str | None, int | None]:
    """(boot id, pid namespace inode) of this process, or Nones where they cannot be known: no /proc,
    or a /proc mounted for another pid namespace (its pids are not ours to check)."""
    pid = os.getpid()
    if pid not in _IDENTITY:
        try:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
            ns = os.stat("/proc/self/ns/pid").st_ino
            own = int(Path("/proc/self/stat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            boot, ns, own = None, None, None
        _IDENTITY[pid] = (boot, ns) if own == pid else (None, None)
    return _IDENTITY[pid]


@dataclass
class ClaimInfo:
    """What a claim file says about its holder; ``heartbeat`` is the file's modification time."""

    host: str
    pid: int
    started: float  # unix time the claim was taken
    heartbeat: float  # unix time the holder last refreshed it
    token: str  # unique per claim: a holder recognises its own file
    command: str = ""
    boot_id: str | None = None  # /proc/sys/kernel/random/boot_id of the holder's machine
    pid_ns: int | None = None  # inode of the holder's /proc/self/ns/pid
    pid_start: int | None = None  # the holder's start time, /proc/<pid>/stat field 22
    unreadable: str | None = None  # why claim.json could not be read as a claim (then no live holder wrote it)

    def age(self, now: float | None = None) -> float:
        """Seconds since the last heartbeat."""
        return (time.time() if now is None else now) - self.heartbeat

    def alive_here(self) -> bool | None:
        """True: the holder is a live process this process can see (same host, boot and pid namespace,
        its pid running with the recorded start time). False: it can be seen and is dead (pid gone or
        reused). None: it cannot be checked from here (another host, boot or pid namespace, or a claim
        without those fields): its heartbeat decides."""
        if self.unreadable is not None:
            return False
        boot, ns = identity()
        if self.host != socket.gethostname() or None in (boot, ns, self.boot_id, self.pid_ns, self.pid_start) \
                or (self.boot_id, self.pid_ns) != (boot, ns):
            return None
        return start_time(self.pid) == self.pid_start

    def is_stale(self, stale_after: float = STALE_AFTER) -> bool:
        alive = self.alive_here()
        return not alive if alive is not None else self.age() > stale_after

    def describe(self) -> str:
        if self.unreadable is not None:
            return f"an unreadable claim file ({self.unreadable})"
        started = dt.datetime.fromtimestamp(self.started, dt.timezone.utc).isoformat(timespec="seconds")
        return f"{self.host} pid {self.pid} since {started}, heartbeat {self.age():.0f} s ago"

    def to_file(self) -> dict:
        """The file's content: everything but the heartbeat, which is the file's modification time."""
        return {k: v for k, v in asdict(self).items() if k not in ("heartbeat", "unreadable")}


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _read(path: Path) -> ClaimInfo | None:
    """The claim in ``path``, None if there is none; a file that is no claim reads as ``unreadable``."""
    try:
        with open(path, "rb") as f:  # opened, then stat-ed: NFS revalidates a file's attributes on open
            mtime = os.fstat(f.fileno()).st_mtime
            raw = f.read(1 << 16)
    except FileNotFoundError:
        return None
    except OSError as e:
        return ClaimInfo("?", -1, 0.0, 0.0, "unreadable", unreadable=_short(f"{type(e).__name__}: {e}"))
    try:
        data = json.loads(raw)
        host, pid, started, token = data["host"], data["pid"], data["started"], data["token"]
        if not (isinstance(host, str) and isinstance(pid, int) and isinstance(token, str) and token
                and isinstance(started, (int, float))):
            raise TypeError("a field of the wrong type")
        boot, ns, start = data.get("boot_id"), data.get("pid_ns"), data.get("pid_start")
        return ClaimInfo(host, pid, float(started), mtime, token, str(data.get("command", "")),
                         boot if isinstance(boot, str) else None, ns if isinstance(ns, int) else None,
                         start if isinstance(start, int) else None)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
        return ClaimInfo("?", -1, mtime, mtime, "unreadable",
                         unreadable=_short(f"not a claim: {type(e).__name__} {e}"))


def holder(folder: Path) -> ClaimInfo | None:
    """The current claim on ``folder`` (live or stale: see ``ClaimInfo.is_stale``), None if unclaimed."""
    return _read(Path(folder) / CLAIM)


def _write_tmp(folder: Path, info: ClaimInfo) -> Path:
    """The claim in a temp file of its own, fsynced, its modification time the holder's clock; a
    failed write (a full disk) leaves no file."""
    tmp = folder / f"{TEMP_PREFIX}{info.token}.{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w") as f:
            json.dump(info.to_file(), f)
            f.flush()
            os.fsync(f.fileno())
        os.utime(tmp, (info.heartbeat, info.heartbeat))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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

    def held(self) -> bool:
        """Re-read the claim: True while it is still ours; False (and ``lost``, said once) otherwise."""
        if self.lost:
            return False
        current = _read(self.path)
        if current is None or current.token != self.info.token:
            self.lost = True
            print(f"warning: claim on {self.folder} was taken over by "
                  f"{current.describe() if current else 'nobody (removed)'}", file=sys.stderr)
            return False
        return True

    def ensure(self, what: str = "write") -> None:
        """Raise ClaimLost unless the claim is still ours: called before each write into the cell."""
        if not self.held():
            raise ClaimLost(f"its claim was taken over by another run before this run's {what}; "
                            "left to the new holder, this run writes nothing more there")

    def refresh(self) -> bool:
        """A new heartbeat (the file's modification time); False (and ``lost``) if the file is no longer
        ours. Touching, not rewriting: if another run takes the claim over between the read and the
        touch, its file is touched, never replaced."""
        if not self.held():
            return False
        now = time.time()
        try:
            os.utime(self.path, (now, now))
        except OSError:  # removed meanwhile (the next check says lost), or a filesystem refusing utime
            return False
        self.info.heartbeat = now
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


def _new_info(command: str | None) -> ClaimInfo:
    now = time.time()
    boot, ns = identity()
    return ClaimInfo(host=socket.gethostname(), pid=os.getpid(), started=now, heartbeat=now,
                     token=uuid.uuid4().hex, command=" ".join(sys.argv) if command is None else command,
                     boot_id=boot, pid_ns=ns, pid_start=start_time(os.getpid()) if ns is not None else None)


def acquire(folder: Path, stale_after: float = STALE_AFTER, beat: float = BEAT, command: str | None = None,
            log=None) -> Claim | None:
    """Claim ``folder`` (created if missing). None when a live holder has it; a stale claim is taken
    over (atomically, with a message through ``log``, default stderr)."""
    check_stale_after(stale_after, beat)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    log = log or (lambda msg: print(msg, file=sys.stderr))
    info = _new_info(command)
    if _link_new(folder, info):
        return Claim(folder, info, beat)
    current = _read(folder / CLAIM)
    if current is not None and not current.is_stale(stale_after):
        return None
    # stale (or vanished meanwhile): take it over under the takeover lock, re-checking under it
    lock = folder / f"{CLAIM}.takeover"
    lock_info = ClaimInfo(info.host, info.pid, info.started, info.heartbeat, info.token)
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
            try:
                (folder / CLAIM).unlink(missing_ok=True)
            except OSError:  # not a file (a folder in its place): nothing this run can take over
                return None
            log(f"taking over the stale claim on {folder} ({again.describe()})")
        info.heartbeat = time.time()
        return Claim(folder, info, beat) if _link_new(folder, info) else None
    finally:
        lock.unlink(missing_ok=True)


def remove_stale_claim_temps(folder: Path, older_than: float = TEMP_STALE) -> list[Path]:
    """Claim temp files (``.claim.json.<token>.<hex>``) and takeover locks left by killed writers: a
    live writer's lives for milliseconds, so only those older than ``older_than`` seconds go."""
    return remove_older([*Path(folder).glob(TEMP_PREFIX + "*"), Path(folder) / f"{CLAIM}.takeover"], older_than)


def wait_for(folder: Path, stale_after: float = STALE_AFTER, poll: float = 5.0, beat: float = BEAT,
             log=None, stop=None) -> Claim | None:
    """Block until ``folder`` can be claimed (its holder finished, or died and went stale). With
    ``stop`` (a StopRequest), a signal ends the wait at once, taking no claim: None."""
    while True:
        if stop is not None and stop.signum:
            return None
        claim = acquire(folder, stale_after=stale_after, beat=beat, log=log)
        if claim is not None:
            if stop is not None and stop.signum:  # a signal during the acquire: give it back
                claim.release()
                return None
            return claim
        deadline = time.monotonic() + poll
        while time.monotonic() < deadline:
            if stop is not None and stop.signum:
                return None
            time.sleep(min(0.1, poll))
