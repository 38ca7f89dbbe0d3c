"""`bench ladder` end to end on CPU, as a user runs it: the rungs it plans, a tiny ladder trained, rerun
(nothing retrained), and its laws read back with `bench table --ladder` (through --workers and --slurm:
tests/e2e/test_launcher.py, with `run` and `sweep`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = ["--scale", "nano", "--activation", "swiglu", "--norm", "pre", "--params", "2e3:1.2e4", "--rungs", "2",
        "--head-dim", "8", "--aspect", "16", "--tokens-per-param", "0.1", "--train.probe_every", "0",
        "--train.val_every", "1000", "--train.val_tokens", "2048", "--quiet"]


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*/record.json"))]


def test_dry_run_shows_the_rungs_and_every_cell_tagged_with_its_size(tmp_path, bench_cli):
    r = bench_cli("ladder", *TINY, "--seed", "0,1", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ladder: 2 rungs, 4 cells" in r.stdout
    ids = [line.strip() for line in r.stdout.splitlines() if line.strip().startswith("nano-swiglu-pre-N")]
    assert len(ids) == len(set(ids)) == 4
    assert not (tmp_path / "results").exists()  # nothing trained, nothing written


@pytest.mark.slow
def test_a_tiny_ladder_trains_resumes_and_fits(tmp_path, bench_cli):
    r = bench_cli("ladder", *TINY, "--seed", "0,1", "--out", "res", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recs = records(tmp_path / "res" / "default-ladder")
    assert len(recs) == 4 and all(x["status"] == "ok" for x in recs)
    sizes = sorted({x["params"]["non_embedding"] for x in recs})
    assert len(sizes) == 2
    assert "scaling laws" in r.stdout and "pure power law" in r.stdout  # 2 rungs: the fallback, said
    assert "## Scaling laws" in (tmp_path / "res" / "default-ladder" / "ladder.md").read_text()
    again = bench_cli("ladder", *TINY, "--seed", "0,1", "--out", "res", cwd=tmp_path)
    assert again.returncode == 0 and "all 4 cells" in again.stdout  # a rerun trains nothing
    table = bench_cli("table", "res/default-ladder", "--ladder", "--predict", "1e5", "--format", "md", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "## Scaling laws" in table.stdout and "Predicted at N = 1e+05" in table.stdout
