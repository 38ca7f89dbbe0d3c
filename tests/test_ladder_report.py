"""A ladder's laws as tables and as the report's section (bench/results/ladder.py,
bench/results/figures/ladder.py), on synthetic ladder records from known laws: L(C) recovers a known
compute exponent; two laws that cross at a known size give that crossover in the section's tables;
the figure draws; records not from a ladder give no section."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest

from bench.results.figures.ladder import ANCHOR, TITLE, fig_ladder, ladder_records, ladder_section
from bench.results.ladder import COMPUTE_TITLE, ladder_points, ladder_view, to_markdown, training_compute
from bench.results.records import Metrics, Params, Record

RUNGS = np.geomspace(2e4, 1e6, 5)
CROSS = 2e5  # where the two laws below are equal


def laws():
    """swiglu: E=1.8, alpha=0.3; polynorm: lower at small N (a lower floor but a smaller exponent), equal to
    swiglu at CROSS and above it beyond."""
    a = lambda x: 1.8 + 1.7 * (np.asarray(x) / 2e4) ** -0.3  # noqa: E731
    b_alpha, b_E = 0.15, 1.6
    b_A = (a(CROSS) - b_E) * CROSS ** b_alpha
    return {"swiglu": a, "polynorm": lambda x: b_E + b_A * np.asarray(x, float) ** -b_alpha}


def record(act, n, s, loss, ladder=True, tokens=None):
    return Record(id=f"micro-{act}-pre-N{n / 1e3:.0f}k-s{s}", status="ok", scale="micro", activation=act, norm="pre",
                  seed=s, axes={"activation": act, "norm": "pre", "seed": s,
                                **({"N": f"{n / 1e3:.0f}k"} if ladder else {})},
                  params=Params(total=int(n) + 16384, non_embedding=int(n)),
                  metrics=Metrics(val_loss=float(loss), tokens=tokens))


def records(seeds=3, sd=0.004, ladder=True):
    rng = np.random.default_rng(7)
    return [record(act, n, s, law(n) + rng.normal(0, sd), ladder, int(20 * n)) for act, law in laws().items()
            for n in RUNGS for s in range(seeds)]


def compute_ladder(alpha_c=0.12, E=1.9, A=40.0, tokens_per_param=20, sd=0.0, seeds=2, rng=None):
    """Records whose loss is a known law in C = 6 N D, D = tokens_per_param N (as `bench ladder` trains)."""
    out = []
    for n in RUNGS.round():
        c = 6 * n * tokens_per_param * n
        for s in range(seeds):
            noise = rng.normal(0, sd) if rng is not None else 0.0
            out.append(record("swiglu", n, s, E + A * c ** -alpha_c + noise, tokens=int(tokens_per_param * n)))
    return out


def test_training_compute_is_six_n_d():
    r = record("swiglu", 1e5, 0, 3.0, tokens=2_000_000)
    assert training_compute(r) == 6 * 1e5 * 2e6
    r.metrics.tokens, r.metrics.steps, r.config = None, 10, {"train": {"batch_size": 4}, "model": {"block_size": 8}}
    assert training_compute(r) == 6 * 1e5 * 10 * 32  # from steps x tokens per step
    r.config = {}
    assert training_compute(r) is None


def test_the_compute_law_recovers_its_exponent_and_the_size_law_doubles_it():
    """L = E + A C^-a with C = 120 N^2 is L = E + A' N^-2a: the same floor, twice the exponent."""
    view = ladder_view(compute_ladder(alpha_c=0.12))
    (fc,), (fn,) = view.compute_fits, view.fits
    assert fc.x_name == "C" and fc.alpha == pytest.approx(0.12, rel=1e-4) and fc.E == pytest.approx(1.9, abs=1e-4)
    assert fc.A == pytest.approx(40.0, rel=1e-3)
    assert fn.alpha == pytest.approx(0.24, rel=1e-4) and fn.E == pytest.approx(1.9, abs=1e-4)


def test_the_compute_law_interval_covers_a_known_exponent_under_noise():
    rng = np.random.default_rng(11)
    hits, draws = 0, 40
    for _ in range(draws):
        (fc,) = ladder_view(compute_ladder(alpha_c=0.12, sd=0.01, seeds=3, rng=rng)).compute_fits
        lo, hi = fc.intervals["alpha"]
        hits += lo <= 0.12 <= hi
    assert hits >= 0.75 * draws  # 90% intervals; 40 draws leave room for chance


def test_the_markdown_table_carries_both_laws():
    md = to_markdown(ladder_view(compute_ladder()))
    assert f"### {COMPUTE_TITLE}" in md
    assert "| swiglu:pre | N |" in md and "| swiglu:pre | C |" in md


def test_the_section_reports_laws_prediction_and_the_known_crossover():
    title, anchor, html = ladder_section(records(), predict=1e7)
    assert (title, anchor) == (TITLE, ANCHOR)
    assert "swiglu:pre" in html and "polynorm:pre" in html
    assert "Predicted at N = 1e+07" in html and "extrapolated" in html
    assert "<h3>Crossovers</h3>" in html and COMPUTE_TITLE in html
    x = float(re.search(r"<td>([0-9.e+]+)</td>", html.split("<h3>Crossovers</h3>")[1]).group(1))
    assert x == pytest.approx(CROSS, rel=0.25)
    png = re.search(r'src="data:image/png;base64,([^"]+)"', html)
    assert png and base64.b64decode(png.group(1))[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_crossover_interval_in_the_view_contains_the_true_size():
    view = ladder_view(ladder_records(records()))
    (cx,) = view.crossovers
    assert cx.x is not None and cx.interval[0] <= CROSS <= cx.interval[1]
    assert cx.below == "swiglu:pre"  # the steeper law is lower past the crossing


def test_records_not_from_a_ladder_give_no_section():
    assert ladder_section(records(ladder=False)) is None
    assert ladder_section([]) is None


def test_the_figure_draws_with_one_seed_and_without_intervals():
    """One seed per rung and only two rungs: the pure power law without a bootstrap still draws."""
    recs = [r for r in records(seeds=1) if r.params.non_embedding in (int(RUNGS[0]), int(RUNGS[-1]))]
    view = ladder_view(recs)
    assert view.fits and all(f.boot is None or not len(f.boot) for f in view.fits)
    assert base64.b64decode(fig_ladder(view, ladder_points(recs)))[:4] == b"\x89PNG"
    assert fig_ladder(ladder_view([]), {}) is None


def test_the_figure_script_writes_a_png_or_says_why_not(tmp_path):
    """scripts/ladder_figure.py as a user runs it, on ladder records written to disk."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for r in records():
        (tmp_path / "lad" / r.id).mkdir(parents=True)
        (tmp_path / "lad" / r.id / "record.json").write_text(json.dumps(r.to_dict()))
    env = {**os.environ, "LITDATA_DISABLE_VERSION_CHECK": "1", "PYTHONPATH": str(root)}

    def run(*args):
        return subprocess.run([sys.executable, str(root / "scripts" / "ladder_figure.py"), *args], env=env,
                              capture_output=True, text=True, timeout=120)

    ok = run(str(tmp_path / "lad"), str(tmp_path / "fig.png"), "--predict", "1e7")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "empty").mkdir()
    bad = run(str(tmp_path / "empty"), str(tmp_path / "no.png"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: no fitted ladder")
    assert not (tmp_path / "no.png").exists()


def test_laws_that_cross_twice_say_so():
    """The fixture's laws cross at CROSS and again far out (polynorm's lower floor wins in the end): the
    first crossing is reported, and the table says the order flips back by the range's end."""
    from bench.results.laws import crossover

    view = ladder_view(ladder_records(records()))
    a, b = view.fits
    far = crossover(a, b, (2e4, 1e14))
    assert far.crossings == 2 and far.below == "swiglu:pre" and far.below_at_end == "polynorm:pre"
    assert "they cross again, polynorm:pre lower" in far.describe()
    near = crossover(a, b, (2e4, 1e7))
    assert near.crossings == 1 and near.below_at_end == "swiglu:pre" and "again" not in near.describe()


def test_the_figure_marks_every_crossing():
    from bench.results.figures.ladder import crossings

    a, b = ladder_view(ladder_records(records())).fits
    both = crossings(a, b, (2e4, 1e14))
    assert len(both) == 2 and both[0] == pytest.approx(CROSS, rel=0.25) and both[1] > 1e8
    assert crossings(a, b, (2e4, 1e5)) == []


def test_the_report_page_carries_the_ladder_section_and_other_pages_do_not(tmp_path):
    from bench.results.records import load_records
    from bench.results.report import render_html

    page = render_html(ladder_records(records()), "ladder")
    assert 'id="scaling-laws"' in page and page.count("Scaling laws (scale ladder)") == 1
    committed, problems = load_records(Path(__file__).resolve().parent.parent / "results" / "ladder-example")
    assert committed and not problems
    assert 'id="scaling-laws"' in render_html(committed, "example")
    assert 'id="scaling-laws"' not in render_html(records(ladder=False), "not a ladder")
