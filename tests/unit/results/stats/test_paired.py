"""Paired statistics against a baseline (bench/results/stats/paired.py): the tests against scipy and
hand computations, Holm's correction, effect sizes, the bootstrap CI, and the pairing by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.results.stats.paired import cohens_dz, compare, hedges_g, seed_noise
from bench.results.stats.verdicts import PAIRED, WELCH, holm

from ..support import record


# ---- paired statistics ---------------------------------------------------------------------------

A = [3.10, 3.02, 3.15, 3.07, 3.11]
B = [3.00, 2.97, 3.04, 2.99, 3.05]


def test_effect_sizes_by_hand():
    d = np.subtract(A, B)
    assert cohens_dz(A, B) == pytest.approx(d.mean() / d.std(ddof=1))
    sp = math.sqrt((np.var(A, ddof=1) * 4 + np.var(B, ddof=1) * 4) / 8)
    assert hedges_g(A, B) == pytest.approx((1 - 3 / (4 * 10 - 9)) * (np.mean(A) - np.mean(B)) / sp)
    assert cohens_dz([1, 2], [0, 1]) is None  # constant differences: d_z undefined


def test_the_mark_and_the_verdict_are_one_test_hsu_not_welch_satterthwaite():
    """3 seeds against 5, no shared seed, equal spreads: Welch-Satterthwaite's 2.8 dof gave p = 0.034 and a
    † mark; Hsu's min(n) - 1 = 2 dof gives p = 0.060: no mark, and the verdict (undecided) agrees."""
    a, b = [3.025, 3.045, 3.065], [3.00, 2.99, 3.01, 3.00, 2.98]
    recs = [record("base", seed=s, loss=v) for s, v in enumerate(b)]
    recs += [record("late", seed=10 + s, loss=v) for s, v in enumerate(a)]
    c = compare(recs)[("nano", "late", "pre")]
    assert sps.ttest_ind(a, b, equal_var=False).pvalue < 0.05  # the old, anti-conservative test
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert c.test.name == WELCH and c.test.t == pytest.approx(ref.statistic) and c.test.dof == 2
    assert c.test.p == pytest.approx(2 * sps.t.sf(abs(ref.statistic), 2)) and c.test.p > 0.05
    assert c.mark == "" and c.verdict == "undecided" and c.decision.p == c.test.p


def test_compare_pairs_by_seed_falls_back_to_welch_and_warns_on_few_seeds():
    recs = [record("base", seed=s, loss=v) for s, v in enumerate(B)]
    recs += [record("paired", seed=s, loss=v) for s, v in enumerate(A)]
    recs += [record("other", seed=10 + s, loss=v) for s, v in enumerate(A)]  # no shared seeds
    recs += [record("two", seed=s, loss=v + 0.01 * s) for s, v in enumerate(A[:2])]
    recs = sorted(recs, key=lambda r: (r.activation != "base"))
    comps = {k[1]: c for k, c in compare(recs).items()}
    assert comps["base"].is_baseline and comps["base"].verdict == "baseline"
    p = comps["paired"]
    assert p.test.name == PAIRED and p.n == 5 and p.effect_name == "d_z"
    assert p.test.p == pytest.approx(sps.ttest_rel(A, B).pvalue)
    assert p.diff == pytest.approx(np.mean(np.subtract(A, B)))
    o = comps["other"]
    assert o.test.name == WELCH and o.effect_name == "g" and o.test.dof == 4  # Hsu: min(n_a, n_b) - 1
    ref = sps.ttest_ind(A, B, equal_var=False)
    assert o.test.t == pytest.approx(ref.statistic) and o.test.p == pytest.approx(2 * sps.t.sf(abs(ref.statistic), 4))
    t = comps["two"]
    assert t.test.name == PAIRED and t.n == 2 and t.few_seeds and not p.few_seeds
    # Holm over the three tests of the matrix
    raw = [comps[k].test.p for k in ("paired", "other", "two")]
    assert [comps[k].p_holm for k in ("paired", "other", "two")] == pytest.approx(holm(raw))
    assert p.verdict == "worse" and p.mark == "†"
    # seed noise: the baseline's SD over its seeds
    assert seed_noise(recs) == {"nano": pytest.approx(np.std(B, ddof=1))}
    assert p.seed_sd == pytest.approx(np.std(B, ddof=1))


@pytest.mark.parametrize("a,b", [([3.0, 3.1, 3.2], [3.3, 3.5, 3.4]), ([1.0, 1.5, 0.7, 1.2], [1.1, 1.0]),
                                 ([5.0, 5.0, 5.1], [4.0, 6.0, 5.5, 4.5, 5.2])])
def test_welch_statistic_is_scipys_with_hsu_dof(a, b):
    recs = [record("base", seed=s, loss=v) for s, v in enumerate(b)]
    recs += [record("x", seed=10 + s, loss=v) for s, v in enumerate(a)]
    w = compare(recs)[("nano", "x", "pre")].test
    ref = sps.ttest_ind(a, b, equal_var=False)
    dof = min(len(a), len(b)) - 1
    assert w.t == pytest.approx(ref.statistic) and w.dof == dof
    assert w.p == pytest.approx(2 * sps.t.sf(abs(ref.statistic), dof))


def test_one_seed_is_no_test_but_a_verdict_that_says_what_is_needed():
    recs = [record("base", seed=s, loss=v) for s, v in enumerate(B)] + [record("one", seed=0, loss=2.9)]
    c = compare(recs)[("nano", "one", "pre")]
    assert c.test is None and c.mark == "" and c.verdict == "undecided"
    assert "1 seed tests nothing" in c.decision.text and "seeds would decide" in c.decision.text
