"""Fault-injection points for the kill tests (tests/test_never_lose.py, tests/test_kill_anywhere.py).

A point is a name, and the optimizer step it is reached at when there is one. Two switches, read
from the environment at each point (unset, always outside tests, a point costs two lookups):
- BENCH_PAUSE_AT=<name>: announce the point on stderr and wait there to be killed;
- BENCH_KILL_AT=<spec>[,<spec>...]: SIGKILL this process at the point, where a spec is
  ``name``, ``name@step`` (only at that step) and/or ``name#n`` (the n-th time it matches; default 1).
  A kill is what an OOM killer or a pulled plug does: no finally block, no atexit, no flush.
"""

import os
import signal
import sys
import time

_seen: dict[str, int] = {}


def _matches(spec: str, name: str, step: int | None) -> bool:
    spec, _, nth = spec.partition("#")
    point, _, at = spec.partition("@")
    if point != name or (at and (step is None or int(at) != step)):
        return False
    _seen[spec] = _seen.get(spec, 0) + 1
    return _seen[spec] == int(nth or 1)


def pause_point(name: str, step: int | None = None) -> None:
    kill = os.environ.get("BENCH_KILL_AT")
    if kill and any(_matches(s.strip(), name, step) for s in kill.split(",")):
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("BENCH_PAUSE_AT") == name:
        print(f"PAUSED AT {name}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("BENCH_PAUSE_SECONDS", "600")))
