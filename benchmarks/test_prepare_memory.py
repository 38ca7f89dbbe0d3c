"""Peak memory of `bench data prepare` at two corpus sizes, one 10x the other: flat memory means
the second peak is about the first, not 10x it. Reported (terminal summary and extra_info), never
asserted: it depends on the machine, the allocator and how many workers run.

Each size runs the real command in a subprocess over a generated JSON-lines corpus split into
files; two peaks are sampled every 20 ms from /proc while it runs:
- tree: the summed resident memory of the command and all its worker processes (litdata's); pages
  shared by forked workers count once per process, so this overstates the machine's use;
- largest: the largest single process (the kernel's ru_maxrss over a wrapper's children: exact).

BENCH_PREP_MB (default 1) is the smaller corpus in MB of text; the larger is 10x. BENCH_PREP_WORKERS
(default 2) is --workers. For the figure to quote, run e.g.
    BENCH_PREP_MB=20 python -m pytest benchmarks/test_prepare_memory.py -s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MB = int(os.environ.get("BENCH_PREP_MB", "1"))
WORKERS = int(os.environ.get("BENCH_PREP_WORKERS", "2"))
FILES = 4


def write_corpus(folder: Path, megabytes: int) -> int:
    """FILES JSON-lines files of real text (the bundled plays, repeated) totalling ~megabytes."""
    from datamodules import load_corpus

    paras = [p for d in load_corpus("bundled") for p in d.text.split("\n\n") if p.strip()]
    folder.mkdir(parents=True)
    target, written, i = megabytes * 2**20, 0, 0
    per_file = target // FILES + 1
    for f in range(FILES):
        with open(folder / f"part-{f:03d}.jsonl", "w") as out:
            n = 0
            while n < per_file:
                line = json.dumps({"text": paras[i % len(paras)]}) + "\n"
                out.write(line)
                n += len(line)
                i += 1
            written += n
    return written


def tree_rss(pid: int) -> int:
    """Resident bytes of pid and every descendant, from /proc (0 for a process that just ended)."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            continue
    return total


# A fresh parent per run, so that its RUSAGE_CHILDREN covers that run's processes only.
WRAPPER = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
           "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def peak_rss(argv: list[str]) -> tuple[int, int, float]:
    """(peak tree bytes, largest single process bytes, seconds) of a command."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1"})
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - t
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    return peak, int(out.split()[-1]) * 1024, seconds  # ru_maxrss is in KiB on Linux


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads process memory from Linux /proc")
def test_prepare_peak_memory_at_two_corpus_sizes(tmp_path, request):
    rows = []
    for mb in (MB, 10 * MB):
        src = tmp_path / f"src-{mb}"
        size = write_corpus(src, mb)
        out = tmp_path / f"out-{mb}"
        tree, largest, seconds = peak_rss([sys.executable, "-m", "bench.cli", "data", "prepare", str(src), "--out",
                                           str(out), "--workers", str(WORKERS), "--quiet"])
        meta = json.loads((out / "meta.json").read_text())
        rows.append({"corpus_mb": size / 2**20, "tokens": meta["splits"]["train"]["tokens"],
                     "peak_tree_mb": tree / 2**20, "largest_process_mb": largest / 2**20,
                     "seconds": seconds})
    ratio = rows[1]["peak_tree_mb"] / rows[0]["peak_tree_mb"]
    lines = [f"bench data prepare, --workers {WORKERS}, {FILES} files (peak RSS; flat = ratio near 1, not 10):"]
    for r in rows:
        lines.append(f"  {r['corpus_mb']:8.1f} MB corpus, {r['tokens']:>12,} tokens: tree peak "
                     f"{r['peak_tree_mb']:7.0f} MB, largest process {r['largest_process_mb']:.0f} MB, "
                     f"{r['seconds']:.1f} s")
    lines.append(f"  ratio of tree peaks (10x corpus / 1x): {ratio:.2f}")
    print("\n".join(lines))
    request.node.user_properties.append(("prepare_memory", rows))
    assert all(r["tokens"] > 0 for r in rows) and rows[1]["tokens"] > 5 * rows[0]["tokens"]  # the sizes are real
