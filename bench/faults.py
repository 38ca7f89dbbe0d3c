"""Fault-injection points for the kill tests (tests/e2e/test_never_lose.py, tests/e2e/test_kill_anywhere.py,
tests/e2e/test_claims.py).

A point is a name, and the optimizer step it is reached at when there is one. Two switches, read
from the environment at each point (unset, always outside tests, a point costs two lookups), each a
comma-separated list of specs, a spec being ``name``, ``name@step`` (only at that step) and/or
``name#n`` (the n-th time it matches; default 1):
- BENCH_PAUSE_AT=<spec>[,<spec>...]: announce the point on stderr and wait there
  BENCH_PAUSE_SECONDS (default 600) to be killed, stopped or let go on;
- BENCH_KILL_AT=<spec>[,<spec>...]: SIGKILL this process at the point.
  A kill is what an OOM killer or a pulled plug does: no finally block, no atexit, no flush.
"""

import os
import signal
import sys
import time

_seen: dict[str, int] = {}


def _matches(switch: str, spec: str, name: str, step: int | None) -> bool:
    spec, _, nth = spec.partition("#")
    point, _, at = spec.partition("@")
    if point != name or (at and (step is None or int(at) != step)):
        return False
    key = f"{switch}:{spec}"
    _seen[key] = _seen.get(key, 0) + 1
    return _seen[key] == int(nth or 1)


def _hit(switch: str, name: str, step: int | None) -> bool:
    specs = os.environ.get(switch)
    return bool(specs) and any(_matches(switch, s.strip(), name, step) for s in specs.split(","))


def pause_point(name: str, step: int | None = None) -> None:
    if _hit("BENCH_KILL_AT", name, step):
        os.kill(os.getpid(), signal.SIGKILL)
    if _hit("BENCH_PAUSE_AT", name, step):
        print(f"PAUSED AT {name}" + (f"@{step}" if step is not None else ""), file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("BENCH_PAUSE_SECONDS", "600")))
