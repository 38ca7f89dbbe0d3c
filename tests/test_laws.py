"""Scaling laws (bench/results/laws.py) on synthetic records from known laws plus seed noise: the fit
recovers the law, its intervals cover the truth at about their nominal rate, and crossovers are found
where the laws really cross."""

from __future__ import annotations

import numpy as np
import pytest

from bench.results.laws import FULL, MAX_EXTRAPOLATION, PURE, crossover, fit_law

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
    """p from the drawn null matches F(2, d2)'s exact tail, (1 + 2F/d2)^(-d2/2)."""
    from bench.results.laws import lack_of_fit

    rng = np.random.default_rng(5)
    xs = np.repeat(np.arange(1.0, 6.0), 3)  # 5 rungs x 3 seeds, 3 parameters: dofs (2, 10)
    for _ in range(5):
        ys = rng.normal(0, 1, len(xs)) + np.repeat(rng.normal(0, 0.7, 5), 3)
        ratio, p = lack_of_fit(xs, ys, np.zeros(len(xs)), 3)
        assert p == pytest.approx((1 + 2 * ratio / 10) ** -5, abs=0.01)


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
