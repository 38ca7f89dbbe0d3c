"""The scaling laws' figure (fig_laws in bench/results/figures/compare.py): it draws with or without
intervals, marks every crossing, and scripts/ladder_figure.py writes it as a PNG or says in one line why
not."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.figures.compare import crossings, fig_laws
from bench.results.stats.laws import fit_laws, law_points

from ..support import CROSS, RUNGS, ladder

ROOT = Path(__file__).resolve().parents[4]


def test_the_figure_draws_with_one_seed_and_without_intervals():
    """One seed per rung and only two rungs: the pure power law without a bootstrap still draws."""
    recs = [r for r in ladder(seeds=1) if r.params.non_embedding in (int(RUNGS[0]), int(RUNGS[-1]))]
    laws = fit_laws(recs)
    assert laws.fits and all(f.boot is None or not len(f.boot) for f in laws.fits)
    assert base64.b64decode(fig_laws(laws, law_points(recs)))[:4] == b"\x89PNG"
    assert fig_laws(fit_laws([]), {}) is None


def test_the_figure_marks_every_crossing():
    a, b = fit_laws(ladder()).fits
    both = crossings(a, b, (2e4, 1e14))
    assert len(both) == 2 and both[0] == pytest.approx(CROSS, rel=0.25) and both[1] > 1e8
    assert crossings(a, b, (2e4, 1e5)) == []


def test_the_figure_script_writes_a_png_or_says_why_not(tmp_path):
    """scripts/ladder_figure.py as a user runs it, on ladder records written to disk."""
    for r in ladder():
        (tmp_path / "lad" / r.id).mkdir(parents=True)
        (tmp_path / "lad" / r.id / "record.json").write_text(json.dumps(r.to_dict()))
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "PYTHONPATH": str(ROOT)}

    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "ladder_figure.py"), *args], env=env,
                              capture_output=True, text=True, timeout=120)

    ok = run(str(tmp_path / "lad"), str(tmp_path / "fig.png"), "--predict", "1e7")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "empty").mkdir()
    bad = run(str(tmp_path / "empty"), str(tmp_path / "no.png"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: no fitted ladder")
    assert not (tmp_path / "no.png").exists()
