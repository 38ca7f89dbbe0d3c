"""bench.results.stats.sequential: the sequential rule against simulations with a known truth (fixed
generator seeds; each assertion states its Monte Carlo tolerance in standard errors of the simulated
rate, SE = sqrt(p (1 - p) / draws))."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from bench.results.stats.sequential import (CALIBRATION_SEED, SEQUENTIAL, Design, review, savings, sequential_p,
                                            sequential_tests, simulate)
from bench.results.stats.verdicts import BETTER, EQUIVALENT, UNDECIDED, WORSE, power, seeds_to_decide

ALPHA, MARGIN = 0.05, 0.01
DOCS = Path(__file__).resolve().parents[4] / "docs" / "verdicts.md"
# the seeds-saved table of docs/verdicts.md: | K | difference | power | mean seeds | fixed seeds |
TABLE = re.findall(r"^\| (\d+) \| (0\.\d+) \| (\d+)% \| (\d+\.\d\d) \| (\d+) \|$", DOCS.read_text(), re.M)


def se(p: float, draws: int) -> float:
    return math.sqrt(p * (1 - p) / draws)


def test_spending_weights():
    """Lan & DeMets' O'Brien-Fleming-type function spends almost nothing early, Pocock's evenly."""
    obf, pocock = Design(8, "obf").weights, Design(8, "pocock").weights
    assert obf.sum() == pytest.approx(1) and pocock.sum() == pytest.approx(1) and len(obf) == 7
    assert np.all(np.diff(obf) > 0) and np.all(np.diff(pocock) < 0)
    # look 4 of 8 has spent F(1/2) / F(1) of the rate: 2 - 2 Phi(1.96 sqrt(2)) over 0.05
    assert obf[:3].sum() == pytest.approx((2 - 2 * stats.norm.cdf(stats.norm.ppf(0.975) * math.sqrt(2))) / 0.05)
    assert pocock[:3].sum() == pytest.approx(math.log(1 + (math.e - 1) / 2))


def test_bad_design_is_one_clear_error():
    with pytest.raises(ValueError, match="obf, pocock"):
        Design(8, "linear")
    with pytest.raises(ValueError, match="max_seeds"):
        Design(1)
    with pytest.raises(ValueError, match="exceed"):
        sequential_p(np.zeros(9), Design(8))
    with pytest.raises(ValueError, match="at least one"):
        review([[0.01], []], Design(8))


@pytest.mark.parametrize("design", [Design(8, "obf"), Design(5, "pocock"), Design(12, "obf")])
def test_the_calibration_holds_against_an_independent_simulation(design):
    """P(q <= b) for a one-sided sequential p-value over all looks 2..K, on 100,000 fresh null paths
    (another generator seed than the calibration's): at most b + 3 SE at every level Holm may use, and
    above what the union bound alone would give (the calibration recovers the looks' overlap)."""
    draws = 100_000
    x = np.random.default_rng(CALIBRATION_SEED + 1).standard_normal((draws, design.max_seeds))
    q = sequential_p(x * 0.02, design)
    for b in (0.05, 0.025, 0.01, 0.005):
        assert float(np.mean(q <= b)) <= b + 3 * se(b, draws), b
    assert float(np.mean(q <= 0.025)) > 0.02  # the union bound alone: about 0.016 at 8 looks


@pytest.mark.parametrize("k", [4, 8, 12])
@pytest.mark.parametrize("sd", [0.005, 0.05])
def test_the_sequential_rule_holds_alpha_where_naive_looks_do_not(k, sd):
    """Under the null, stopping at the first look (2..K) that decides: wrong better / worse at most
    alpha + 3 SE. A t-test at alpha after every seed, stopping at the first p < alpha, exceeds it
    (0.10 at K = 4, 0.16 at 8, 0.19 at 12 here)."""
    draws = 4000
    used, outcome = simulate(Design(k), 0.0, sd, margin=MARGIN, draws=draws, seed=k)
    assert float(np.mean(np.abs(outcome) == 1)) <= ALPHA + 3 * se(ALPHA, draws)
    x = sd * np.random.default_rng(k).standard_normal((draws, k))
    naive = np.zeros(draws, bool)
    for n in range(2, k + 1):
        naive |= stats.ttest_1samp(x[:, :n], 0.0, axis=1).pvalue < ALPHA
    assert float(naive.mean()) > ALPHA + 3 * se(ALPHA, draws)


@pytest.mark.parametrize("truth", [MARGIN, -MARGIN, 1.5 * MARGIN])
@pytest.mark.parametrize("sd", [0.003, 0.01])
def test_the_sequential_rule_holds_alpha_for_equivalence(truth, sd):
    draws = 4000
    _, outcome = simulate(Design(8), truth, sd, margin=MARGIN, draws=draws, seed=int(truth < 0) + int(1e4 * sd))
    assert float(np.mean(outcome == 2)) <= ALPHA + 3 * se(ALPHA, draws)


def rounds(diffs: np.ndarray, design: Design, first: int = 1) -> tuple[list, int]:
    """The runner's loop over ``review``: every comparison starts with ``first`` pairs; each round
    adds one to those that need it. -> (final statuses, rounds)."""
    m = diffs.shape[0]
    have = [first] * m
    r = 0
    while True:
        statuses = review([diffs[i, : have[i]] for i in range(m)], design, plan=False)
        if not any(s.needs_seed for s in statuses):
            return statuses, r
        have = [h + s.needs_seed for h, s in zip(have, statuses)]
        r += 1


@pytest.mark.slow  # a simulation of many matrices
def test_rounds_hold_the_family_wise_rates():
    """3 comparisons against one baseline, K = 6, one seed a round through ``review``: all truly equal,
    any wrong better / worse at most alpha + 3 SE (1,000 draws); all on the margin (+-0.01), any wrong
    equivalent at most alpha + 3 SE."""
    draws, m, k = 1000, 3, 6
    design = Design(k)
    rng = np.random.default_rng(7)
    wrong_diff = wrong_eq = 0
    for truth, sd in (((0.0, 0.0, 0.0), 0.015), ((MARGIN, -MARGIN, MARGIN), 0.002)):
        for _ in range(draws):
            base = rng.normal(0, sd, k)
            diffs = rng.normal(0, sd, (m, k)) + np.array(truth)[:, None] - base
            statuses, _ = rounds(diffs, design)
            if truth[0] == 0:
                wrong_diff += any(s.verdict.kind in (BETTER, WORSE) for s in statuses)
            else:
                wrong_eq += any(s.verdict.kind == EQUIVALENT or s.verdict.within_margin for s in statuses)
    assert wrong_diff / draws <= ALPHA + 3 * se(ALPHA, draws)
    assert wrong_eq / draws <= ALPHA + 3 * se(ALPHA, draws)


def test_review_bookkeeping():
    design = Design(4)
    statuses = review([[-0.03, -0.031, -0.029, -0.030], [0.01, -0.01, 0.004], [0.01, -0.01, 0.004, 0.0], [0.002]],
                      design)
    first, middle, capped, single = statuses
    assert first.decided and first.verdict.kind == BETTER and not first.needs_seed and first.seeds == 4
    assert first.verdict.test == SEQUENTIAL
    assert not middle.decided and middle.needs_seed and middle.verdict.kind == UNDECIDED
    assert not capped.decided and not capped.needs_seed  # undecided at max_seeds: stop there
    assert single.needs_seed and single.verdict.test is None and "1 seed tests nothing" in single.verdict.text
    assert middle.verdict.mde is not None and "would decide" in middle.verdict.text


def test_intervals_agree_with_the_tests():
    """The 90% sequential interval lies inside +-margin exactly when equivalence is decided at 0.05,
    the 95% one excludes 0 exactly when the difference is; over 300 random paths."""
    design, rng = Design(8), np.random.default_rng(8)
    seen = set()
    for _ in range(300):
        n = int(rng.integers(2, 9))
        d = rng.normal(rng.uniform(-0.03, 0.03), rng.uniform(0.001, 0.02), n)
        t = sequential_tests(d, design, MARGIN)
        inside = -MARGIN < t.ci90[0] and t.ci90[1] < MARGIN
        excludes = t.ci95[0] > 0 or t.ci95[1] < 0
        assert (t.p_equiv < 0.05) == inside and (t.p < 0.05) == excludes
        seen |= {(inside, excludes)}
    assert {(True, False), (False, True), (False, False)} <= seen


@pytest.mark.parametrize("truth", [0.0, 0.012, -0.03])
def test_sequential_intervals_cover(truth):
    """The 95% sequential interval after the last look covers the truth (it holds at every look at
    once): at least 0.95 - 3 SE of 1,000 paths."""
    draws, design = 1000, Design(6)
    x = np.random.default_rng(9).normal(truth, 0.01, (draws, 6))
    cover = sum(lo <= truth <= hi for lo, hi in (sequential_tests(row, design).ci95 for row in x))
    assert cover / draws >= 0.95 - 3 * se(0.95, draws)


@pytest.mark.parametrize("effect", [-0.02, 0.03])
def test_savings_agree_with_the_rounds_and_the_fixed_design(effect):
    """``savings`` (20,000 vectorized draws) against 1,000 runs of the round loop through ``review``
    (the code the runner calls): power and mean seeds within 4 combined SE. The fixed design it names
    reaches the same power: the noncentral t says so, and so does a simulation of the t-test."""
    sd, design = 0.015, Design(8)
    s = savings(design, effect, sd, margin=MARGIN)
    draws, rng = 1000, np.random.default_rng(11)
    used, right = [], 0
    for _ in range(draws):
        statuses, _ = rounds(rng.normal(effect, sd, (1, 8)), design)
        used.append(statuses[0].seeds)
        right += statuses[0].verdict.kind == (BETTER if effect < 0 else WORSE)
    assert abs(right / draws - s.power) <= 4 * math.hypot(se(s.power, draws), s.power_se)
    mean_se = float(np.std(used, ddof=1)) / math.sqrt(draws)
    assert abs(np.mean(used) - s.expected_seeds) <= 4 * math.hypot(mean_se, s.expected_seeds_se)
    m = s.fixed_seeds
    assert m == seeds_to_decide(effect, sd, ALPHA, target=s.power)
    assert power(effect, sd, m, ALPHA) >= s.power > power(effect, sd, m - 1, ALPHA)
    x = np.random.default_rng(12).normal(effect, sd, (4000, m))
    fixed = float(np.mean(stats.ttest_1samp(x, 0.0, axis=1).pvalue < ALPHA))
    assert fixed >= s.power - 3 * math.hypot(se(s.power, 4000), s.power_se)
    assert s.expected_seeds < m  # at these effects the sequential design saves seeds
    assert f"where a fixed design of equal power needs {m}" in s.describe()


def test_savings_at_no_difference():
    s = savings(Design(6), 0.0, 0.015, margin=MARGIN, draws=4000)
    assert s.fixed_seeds is None and s.power == 0 and "no fixed design" in s.describe(used=5)


@pytest.mark.parametrize("k,effect,pct,used,fixed", TABLE)
def test_the_seeds_saved_table_in_the_docs(k, effect, pct, used, fixed):
    """Each row of docs/verdicts.md's table is what ``savings`` computes (SD 0.015, margin 0.01)."""
    s = savings(Design(int(k)), float(effect), 0.015, margin=MARGIN)
    assert (f"{s.power:.0%}", f"{s.expected_seeds:.2f}", s.fixed_seeds) == (f"{pct}%", used, int(fixed))


def test_the_docs_table_was_found():
    assert len(TABLE) == 6
