"""Shared settings and helpers for the micro-benchmarks (see README.md in this folder).

pyproject.toml's pytest ``addopts`` holds ``--benchmark-disable``: without ``--benchmark-enable``
every benchmark body runs exactly once, as a plain test. Nothing here asserts a timing.
"""

from __future__ import annotations

import os

import pytest
import torch

# Rounds per benchmark when enabled (after WARMUP untimed rounds); BENCH_ROUNDS overrides.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "15"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "2"))
# Intra-op threads while a benchmark runs; BENCH_THREADS overrides, 0 keeps torch's default.
# 1 by default: on a small shared machine (2 vCPUs here) a second thread made timings jump
# between ~12 ms and ~120 ms for the same FFN step; one thread gave run-to-run spreads of a few %.
THREADS = int(os.environ.get("BENCH_THREADS", "1"))

_TABLES = pytest.StashKey[list]()


@pytest.fixture(autouse=True)
def _bench_threads():
    """Run every test in this folder with THREADS intra-op threads, then restore the setting."""
    before = torch.get_num_threads()
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def timed(benchmark):
    """timed(fn): benchmark ``fn`` with a fixed, small number of rounds (pytest-benchmark's
    pedantic mode, so the run time is bounded); a single untimed call when benchmarks are disabled."""

    def run(fn):
        return benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=WARMUP, iterations=1)

    return run


@pytest.fixture
def report_table(request):
    """report_table(title, header, rows, notes=()) prints a table in the terminal summary."""

    def add(title: str, header: list[str], rows: list[list], notes=()):
        tables = request.config.stash.setdefault(_TABLES, [])
        if all(t[0] != title for t in tables):  # one copy per title (parametrized callers)
            tables.append((title, header, rows, list(notes)))

    return add


def _format(header, rows):
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def line(r):
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]


def pytest_terminal_summary(terminalreporter, config):
    if not config.getoption("benchmark_enable", False):
        return  # keep CI's closing line pytest's own summary
    tables = config.stash.get(_TABLES, [])
    for title, header, rows, notes in tables:
        terminalreporter.section(title, sep="-")
        for text in _format(header, rows) + notes:
            terminalreporter.write_line(text)


def pytest_benchmark_update_machine_info(config, machine_info):
    """Record what the numbers depend on, so --benchmark-compare warns when it differs."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_num_threads"] = THREADS or torch.get_num_threads()
    machine_info["cpu_count"] = os.cpu_count()
