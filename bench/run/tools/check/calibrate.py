"""Tolerances derived from the spread the same code shows across environments one machine can
emulate: the kernels of other CPUs (ATEN_CPU_CAPABILITY=default|avx2|avx512, those at or below this
CPU's) and another thread count per cell. Every cell is run on this machine and once per environment
in a child process; for each recorded quantity (loss.step8, grad_norm.perturbed, ...) the largest
relative deviation from the baseline's numbers, times FACTOR, is the tolerance's relative part, never
below the default (the floor). The method, the environments and the spread are stored with the baseline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from .cells import MEASURED, UNTRAINED
from .compare import DEFAULT_TOLERANCES

FACTOR = 4  # margin over the largest emulated deviation, for CPUs and libraries not emulated here
CAPABILITIES = ("default", "avx2", "avx512")  # ATen's CPU kernel sets on x86, weakest first


def environments() -> list[dict]:
    """The environments this machine can emulate besides its own: weaker kernel sets, 2 threads."""
    native = torch.backends.cpu.get_cpu_capability().lower()  # 'avx512', 'avx2', 'default', ...
    caps = CAPABILITIES[:CAPABILITIES.index(native)] if native in CAPABILITIES else ("default",)
    envs = [{"name": f"ATEN_CPU_CAPABILITY={c}", "env": {"ATEN_CPU_CAPABILITY": c}, "threads": 1} for c in caps]
    return envs + [{"name": "2 threads per cell", "env": {}, "threads": 2}]


def _child(spec: str) -> None:
    """In a child process: run the cells as the spec says and write their records."""
    from .train import load_data, run_cells

    job = json.loads(Path(spec).read_text())
    cells = [tuple(c) for c in job["cells"]]
    results = run_cells(cells, job["steps"], load_data(job["steps"]), job["jobs"], show_progress=False,
                        threads=job["threads"])
    Path(job["out"]).write_text(json.dumps(results))


def run_environment(env: dict, cells: list, steps: int, jobs: int) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec.write_text(json.dumps({"cells": cells, "steps": steps, "threads": env["threads"], "out": str(out),
                                    "jobs": max(1, jobs // env["threads"])}))
        code = f"from bench.run.tools.check.calibrate import _child; _child({str(spec)!r})"
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, **env["env"]})
        return json.loads(out.read_text())


def spread(reference: dict[str, dict], runs: dict[str, dict[str, dict]]) -> dict:
    """Per quantity: the largest |other - reference| / |reference| over cells and environments, and where."""
    out: dict = {}
    for env, results in runs.items():
        for name, rec in results.items():
            ref = reference.get(name, {})
            for section in MEASURED:
                for key, value in (rec.get(section) or {}).items():
                    b = (ref.get(section) or {}).get(key)
                    if value is None or b is None:
                        continue
                    rel = abs(value - b) / max(abs(b), 1e-12)
                    best = out.setdefault(section, {}).get(key)
                    if best is None or rel > best["rel"]:
                        out[section][key] = {"rel": rel, "abs": abs(value - b), "cell": name, "environment": env}
    return out


def tolerances_from(found: dict, keys: dict[str, list[str]]) -> dict:
    """Each quantity's tolerance: the default of its kind, its relative part widened to FACTOR x the
    spread found when that is larger."""
    tol: dict = {"params": "exact"}
    for section in MEASURED:
        tol[section] = {}
        for key in keys[section]:
            a, r = DEFAULT_TOLERANCES[section]["untrained" if key in UNTRAINED else "trained"]
            seen = (found.get(section) or {}).get(key, {}).get("rel", 0.0)
            tol[section][key] = {"abs": a, "rel": float(f"{max(r, FACTOR * seen):.2g}")}
    return tol


def calibrate(reference: dict[str, dict], here: dict[str, dict], steps: int, opts, console) -> dict:
    """The baseline's tolerance block: every cell of ``reference`` (the baseline's numbers) against
    ``here`` (this machine's run) and against each emulated environment."""
    from .cells import parse_name

    cells = [list(parse_name(n)) for n in reference]
    runs = {"this machine": here}
    for env in environments():
        console.print(f"calibrating: {len(cells)} cells with {env['name']}", highlight=False)
        runs[env["name"]] = run_environment(env, cells, steps, opts.jobs)
    found = spread(reference, runs)
    keys = {s: sorted({k for rec in reference.values() for k in (rec.get(s) or {})}) for s in MEASURED}
    tol = tolerances_from(found, keys)
    tol["method"] = {
        "how": "per quantity: abs = the default of its kind; rel = max(default, FACTOR x the largest relative "
               "deviation of any cell, in this machine's run or an emulated environment, from the baseline's "
               "numbers); docs/check.md",
        "factor": FACTOR, "defaults": {s: {k: {"abs": a, "rel": r} for k, (a, r) in v.items()}
                                         for s, v in DEFAULT_TOLERANCES.items()}, "machine": _machine(),
        "environments": list(runs), "spread": found,
    }
    return tol


def _machine() -> str:
    import platform

    return (f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads available")
