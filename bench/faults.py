"""Fault-injection points for the kill tests (tests/test_never_lose.py): with the environment variable
BENCH_PAUSE_AT=<name>, the process announces the point on stderr and waits there to be killed. Unset
(always, outside tests) a point costs one dictionary lookup."""

import os
import sys
import time


def pause_point(name: str) -> None:
    if os.environ.get("BENCH_PAUSE_AT") == name:
        print(f"PAUSED AT {name}", file=sys.stderr, flush=True)
        time.sleep(float(os.environ.get("BENCH_PAUSE_SECONDS", "600")))
