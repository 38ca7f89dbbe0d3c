"""Scaling laws (bench/results/stats/laws.py), the harness's one fitter, on synthetic records from known
laws plus seed noise: the fit recovers the law and is the least-squares optimum (scipy's curve_fit
finds the same on the committed example), its intervals cover the truth at about their nominal rate,
crossovers are found where the laws really cross, the form follows the number of rungs (or scales), and
the law in compute C = 6 N D has half the exponent of the law in N on a tokens-per-parameter ladder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.results.records import Metrics, Params, Record, load_records
from bench.results.stats.laws import (FULL, MAX_EXTRAPOLATION, PURE, crossover, fit_law, fit_laws, lack_of_fit,
                                      law_points, law_records, training_compute)

from ..support import CROSS, ladder

ROOT = Path(__file__).resolve().parents[4]

RUNGS = np.geomspace(2e4, 1e6, 5)


def law(x, E=1.8, alpha=0.3, A=None):
    A = 1.7 * 2e4 ** alpha if A is None else A
    return E + A * np.asarray(x, float) ** (-alpha)


def draw(rng, seeds=3, sd=0.02, rungs=RUNGS, **kw):
    xs = np.repeat(rungs, seeds)
    return xs, law(xs, **kw) + rng.normal(0, sd, len(xs))


def test_noise_free_points_give_back_the_law():
    xs = np.repeat(RUNGS, 2)
    fit = fit_law(xs, law(xs), "swiglu")
    assert fit.form == FULL
    assert fit.alpha == pytest.approx(0.3, rel=1e-6)
    assert fit.E == pytest.approx(1.8, rel=1e-6)
    assert fit.A == pytest.approx(1.7 * 2e4 ** 0.3, rel=1e-5)


def test_the_fit_is_the_least_squares_optimum():
    """No nearby parameter vector has a smaller sum of squares than the fit's."""
    xs, ys = draw(np.random.default_rng(3))
    fit = fit_law(xs, ys)
    best = np.sum((fit.curve(xs) - ys) ** 2)
    for dA, da, dE in [(1.001, 0, 0), (0.999, 0, 0), (1, 1e-3, 0), (1, -1e-3, 0), (1, 0, 1e-3), (1, 0, -1e-3)]:
        other = fit.E + dE + fit.A * dA * xs ** -(fit.alpha + da)
        assert np.sum((other - ys) ** 2) > best


@pytest.mark.slow  # a simulation of many fits
def test_ninety_percent_intervals_cover_the_truth_about_ninety_percent_of_the_time():
    rng = np.random.default_rng(20261201)
    truth_in = float(law(2e5))
    hits = {"alpha": 0, "E": 0, "mean at 2e5": 0, "new seed at 2e5": 0}
    draws = 200
    for i in range(draws):
        xs, ys = draw(rng)
        fit = fit_law(xs, ys, confidence=0.90, resamples=500, seed=i)
        hits["alpha"] += fit.intervals["alpha"][0] <= 0.3 <= fit.intervals["alpha"][1]
        hits["E"] += fit.intervals["E"][0] <= 1.8 <= fit.intervals["E"][1]
        p = fit.predict(2e5, seed=i)
        hits["mean at 2e5"] += p.mean_interval[0] <= truth_in <= p.mean_interval[1]
        new = truth_in + rng.normal(0, 0.02)  # a fresh seed's loss at that size
        hits["new seed at 2e5"] += p.interval[0] <= new <= p.interval[1]
    coverage = {k: v / draws for k, v in hits.items()}
    assert all(0.85 <= c <= 0.95 for c in coverage.values()), coverage


def test_two_laws_crossing_at_a_known_size_are_found_crossing_there():
    rng = np.random.default_rng(7)
    # b has the lower floor but the slower decay: b is better at small N, a beyond N* = 3e5
    star, alpha_a, alpha_b, E_a, E_b, A_a = 3e5, 0.3, 0.2, 1.8, 1.6, 1.7 * 2e4 ** 0.3
    A_b = (E_a - E_b + A_a * star ** -alpha_a) / star ** -alpha_b
    contained = 0
    for i in range(20):
        a = fit_law(*draw(rng, sd=0.01, E=E_a, alpha=alpha_a, A=A_a), "a", seed=i)
        b = fit_law(*draw(rng, sd=0.01, E=E_b, alpha=alpha_b, A=A_b), "b", seed=i)
        c = crossover(a, b)
        assert c.x is not None and c.below == "a"
        contained += c.interval[0] <= star <= c.interval[1]
    assert contained >= 16  # 90% intervals: about 18 of 20


def test_parallel_laws_have_no_crossover_in_range():
    rng = np.random.default_rng(11)
    a = fit_law(*draw(rng, sd=0.01), "a")
    b = fit_law(*draw(rng, sd=0.01, E=1.5), "b")
    c = crossover(a, b)
    assert c.x is None and c.interval is None
    assert "no crossover in range" in c.describe()


def test_three_rungs_fall_back_to_the_pure_power_law_and_say_so():
    rng = np.random.default_rng(5)
    xs, ys = draw(rng, rungs=RUNGS[:3])
    fit = fit_law(xs, ys, "polynorm")
    assert fit.form == PURE and fit.E == 0
    assert "pure power law" in fit.note and "E" not in fit.intervals


def test_predictions_far_past_the_largest_rung_are_flagged():
    fit = fit_law(*draw(np.random.default_rng(1)))
    near, far = fit.predict(2e6), fit.predict(1e6 * MAX_EXTRAPOLATION * 10)
    assert near.factor == pytest.approx(2.0) and not near.beyond_limit
    assert far.beyond_limit
    assert far.interval[1] - far.interval[0] > near.interval[1] - near.interval[0]  # wider further out


@pytest.mark.parametrize("xs, ys, what", [
    ([1e5, 1e5], [3.0, 3.1], "at least 2 distinct sizes"),
    ([1e5, -1], [3.0, 3.1], "x > 0"),
    ([1e5, 2e5], [3.0, float("nan")], "finite"),
])
def test_unfittable_points_are_one_line(xs, ys, what):
    with pytest.raises(ValueError, match=what):
        fit_law(xs, ys, "g")


def test_the_lack_of_fit_p_value_is_the_f_distributions():
    """p is F(2, d2)'s upper tail, which has the closed form (1 + 2F/d2)^(-d2/2)."""
    rng = np.random.default_rng(5)
    xs = np.repeat(np.arange(1.0, 6.0), 3)  # 5 rungs x 3 seeds, 3 parameters: dofs (2, 10)
    for _ in range(5):
        ys = rng.normal(0, 1, len(xs)) + np.repeat(rng.normal(0, 0.7, 5), 3)
        ratio, p = lack_of_fit(xs, ys, np.zeros(len(xs)), 3)
        assert p == pytest.approx((1 + 2 * ratio / 10) ** -5, rel=1e-9)


def test_lack_of_fit_is_flagged_when_rungs_miss_the_law_and_rarely_otherwise():
    """Seed noise about the true law: the note comes up about 1% of the time. Each rung off the law by
    5x the seed noise, alternately above and below (a zigzag no smooth law absorbs, as when depth jumps
    between rungs): nearly always."""
    rng = np.random.default_rng(8)
    draws, flagged_ok, flagged_off = 100, 0, 0
    for _ in range(draws):
        xs, ys = draw(rng, seeds=2, sd=0.01)
        flagged_ok += "lack of fit" in fit_law(xs, ys, resamples=20).note
        off = np.repeat(0.05 * (-1.0) ** np.arange(len(RUNGS)), 2)
        flagged_off += "lack of fit" in fit_law(xs, ys + off, resamples=20).note
    assert flagged_ok <= 5 and flagged_off >= 90


def test_the_fit_is_curve_fits_optimum_on_the_committed_example():
    """An independent least-squares solver (scipy.optimize.curve_fit, from its own start) lands on the same
    law as the profiled fit, for every group of results/ladder-example, in N and in C."""
    from scipy.optimize import curve_fit

    records, problems = load_records(ROOT / "results" / "ladder-example")
    assert records and not problems
    for x in ("N", "C"):
        for group, (xs, ys) in law_points(records, x).items():
            law = fit_law(xs, ys, group, x, resamples=50)
            u = np.asarray(xs) / np.exp(np.mean(np.log(xs)))
            (a, alpha, e), _ = curve_fit(lambda v, a, al, e: e + a * v ** -al, u, ys, p0=(1.0, 0.3, min(ys) / 2),
                                         maxfev=20000)
            assert law.alpha == pytest.approx(alpha, rel=1e-4) and law.E == pytest.approx(e, rel=1e-4), (x, group)
            assert law.form == FULL and "lack of fit" in law.note  # the example's rungs miss the law (its README)


# ---- records as laws: points in N and C, groups, the form by number of scales ---------------------

def cell(act, n, s, loss, tokens=None, scale="micro", axes=None):
    return Record(id=f"{scale}-{act}-pre-N{n / 1e3:.0f}k-s{s}", status="ok", scale=scale, activation=act, norm="pre",
                  seed=s, axes={"activation": act, "norm": "pre", "seed": s, **(axes or {})},
                  params=Params(total=int(n) + 16384, non_embedding=int(n)),
                  metrics=Metrics(val_loss=float(loss), tokens=tokens))


def test_training_compute_is_six_n_d():
    r = cell("swiglu", 1e5, 0, 3.0, tokens=2_000_000)
    assert training_compute(r) == 6 * 1e5 * 2e6
    r.metrics.tokens, r.metrics.steps, r.config = None, 10, {"train": {"batch_size": 4}, "model": {"block_size": 8}}
    assert training_compute(r) == 6 * 1e5 * 10 * 32  # from steps x tokens per step
    r.config = {}
    assert training_compute(r) is None


def compute_ladder(alpha_c=0.12, E=1.9, A=40.0, tokens_per_param=20, sd=0.0, seeds=2, rng=None):
    """Records whose loss is a known law in C = 6 N D, D = tokens_per_param N (as `bench ladder` trains)."""
    out = []
    for n in RUNGS.round():
        c = 6 * n * tokens_per_param * n
        for s in range(seeds):
            noise = rng.normal(0, sd) if rng is not None else 0.0
            out.append(cell("swiglu", n, s, E + A * c ** -alpha_c + noise, tokens=int(tokens_per_param * n),
                            axes={"N": f"{n / 1e3:.0f}k"}))
    return out


def test_the_compute_law_recovers_its_exponent_and_the_size_law_doubles_it():
    """L = E + A C^-a with C = 120 N^2 is L = E + A' N^-2a: the same floor, twice the exponent."""
    laws = fit_laws(compute_ladder(alpha_c=0.12))
    (fc,), (fn,) = laws.compute_fits, laws.fits
    assert fc.x_name == "C" and fc.alpha == pytest.approx(0.12, rel=1e-4) and fc.E == pytest.approx(1.9, abs=1e-4)
    assert fc.A == pytest.approx(40.0, rel=1e-3)
    assert fn.alpha == pytest.approx(0.24, rel=1e-4) and fn.E == pytest.approx(1.9, abs=1e-4)


def test_the_compute_law_interval_covers_a_known_exponent_under_noise():
    rng = np.random.default_rng(11)
    hits, draws = 0, 40
    for _ in range(draws):
        (fc,) = fit_laws(compute_ladder(alpha_c=0.12, sd=0.01, seeds=3, rng=rng)).compute_fits
        lo, hi = fc.intervals["alpha"]
        hits += lo <= 0.12 <= hi
    assert hits >= 0.75 * draws  # 90% intervals; 40 draws leave room for chance


def test_preset_scales_fit_by_their_count_and_split_groups_by_swept_axes():
    """A matrix run at preset scales (no ladder): 2 scales give the pure power law, 4 the law with a floor; a
    swept axis other than the scale, activation, norm and seed is a group of its own."""
    n = {"nano": 1e5, "micro": 1e6, "small": 1e7, "big": 1e8}
    two = [cell("swiglu", n[sc], s, math.log(5 * n[sc] ** -0.1) + 0.001 * s, tokens=10**6, scale=sc)
           for sc in ("nano", "micro") for s in range(2)]
    assert law_records(two) == two and law_records(two[:2]) == []  # one scale: nothing to fit
    laws = fit_laws(two)
    (f,), (c,) = laws.fits, laws.compute_fits
    assert f.form == c.form == PURE and f.n_points == 4 and len(f.rungs) == 2
    assert c.rungs[0] == pytest.approx(6 * 1e5 * 1e6) and c.alpha == pytest.approx(f.alpha)  # D is constant
    assert f.alpha == pytest.approx(-np.polyfit(np.log([1e5, 1e6]), np.log(np.log(5 * np.array([1e5, 1e6]) ** -0.1)),
                                                1)[0], rel=5e-3)  # seeds 0.001 apart
    four = [cell("gelu", n[sc], s, 2.0 * n[sc] ** -0.25 + 1.5 + 0.001 * s, scale=sc, axes={"train.lr": 1e-3})
            for sc in n for s in range(2)]
    (f,) = fit_laws(four).fits
    assert f.group == "gelu:pre [train.lr=0.001]" and f.form == FULL
    assert f.alpha == pytest.approx(0.25, rel=1e-3) and f.E == pytest.approx(1.5, rel=1e-3)


def test_the_crossover_interval_contains_the_true_size_and_a_second_crossing_is_said():
    """The fixture's laws cross at CROSS and again far out (polynorm's lower floor wins in the end): the
    first crossing is reported with its interval, and the order flipping back by the range's end is said."""
    laws = fit_laws(ladder())
    (cx,) = laws.crossovers
    assert cx.x is not None and cx.interval[0] <= CROSS <= cx.interval[1]
    assert cx.below == "swiglu:pre"  # the steeper law is lower past the crossing
    a, b = laws.fits
    far = crossover(a, b, (2e4, 1e14))
    assert far.crossings == 2 and far.below == "swiglu:pre" and far.below_at_end == "polynorm:pre"
    assert "they cross again, polynorm:pre lower" in far.describe()
    near = crossover(a, b, (2e4, 1e7))
    assert near.crossings == 1 and near.below_at_end == "swiglu:pre" and "again" not in near.describe()
