"""How long planning takes: expanding a matrix of 10^4 cells in-process, and `bench plan --json` on
it as a user runs it (Python start-up and imports included). Target: under 5 s each on the project's
2-core CPU machine. Reported, never asserted:

    pytest benchmarks/test_plan_speed.py -s --benchmark-enable     (BENCH_PLAN_CELLS, default 10000;
                                                                    1000 when benchmarks are disabled)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def cells_wanted(request) -> int:
    enabled = request.config.getoption("benchmark_enable", False)
    return int(os.environ.get("BENCH_PLAN_CELLS") or (10_000 if enabled else 1_000))


def matrix(n: int) -> dict:
    return {"name": "plan-speed", "fixed": {"scale": "nano"},
            "axes": {"activation": ["swiglu", "gelu", "relu", "polynorm", "powlu"], "norm": ["pre", "pre+gpas"],
                     "seed": list(range(max(1, n // 10)))}}


def test_expansion_and_plan_speed(request, tmp_path):
    from bench.run.config.matrix import Matrix, expand

    n = cells_wanted(request)
    m = matrix(n)
    start = time.perf_counter()
    cells = expand(Matrix(m["name"], "", m["fixed"], m["axes"], []))
    expand_s = time.perf_counter() - start
    path = tmp_path / "plan-speed.yaml"
    path.write_text(yaml.safe_dump(m))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bench.cli", "plan", str(path), "--json"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    plan_s = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    print(f"\n  {len(cells):,} cells: expansion {expand_s:.2f} s ({expand_s / len(cells) * 1e6:.0f} us/cell, "
          f"target 5 s: x{expand_s / 5:.2f}); `bench plan --json` {plan_s:.2f} s wall (x{plan_s / 5:.2f})")
