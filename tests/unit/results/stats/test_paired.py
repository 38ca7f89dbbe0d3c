"""Paired statistics against a baseline (bench/results/stats/paired.py): the tests against scipy and
hand computations, Holm's correction, effect sizes, the bootstrap CI, and the pairing by seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.results.stats.paired import (PAIRED, WELCH, bootstrap_ci, cohens_dz, compare, hedges_g, holm, paired_t,
                                        seed_noise, welch_t)

from ..support import record


# ---- paired statistics ---------------------------------------------------------------------------

A = [3.10, 3.02, 3.15, 3.07, 3.11]
B = [3.00, 2.97, 3.04, 2.99, 3.05]


def test_paired_and_welch_match_scipy():
    p = paired_t(A, B)
    ref = sps.ttest_rel(A, B)
    assert p.name == PAIRED and p.t == pytest.approx(ref.statistic) and p.p == pytest.approx(ref.pvalue)
    assert p.dof == len(A) - 1
    w = welch_t(A, B)
    ref = sps.ttest_ind(A, B, equal_var=False)
    assert w.name == WELCH and w.t == pytest.approx(ref.statistic) and w.p == pytest.approx(ref.pvalue)
    # pairing removes the shared per-seed offset: the paired p is far smaller on this data
    assert p.p < w.p


def test_effect_sizes_by_hand():
    d = np.subtract(A, B)
    assert cohens_dz(A, B) == pytest.approx(d.mean() / d.std(ddof=1))
    sp = math.sqrt((np.var(A, ddof=1) * 4 + np.var(B, ddof=1) * 4) / 8)
    assert hedges_g(A, B) == pytest.approx((1 - 3 / (4 * 10 - 9)) * (np.mean(A) - np.mean(B)) / sp)
    # constant differences: d_z undefined; t infinite with p = 0, as scipy says
    assert cohens_dz([1, 2], [0, 1]) is None
    ref = sps.ttest_rel([1, 2], [0, 1])
    assert paired_t([1, 2], [0, 1]).t == ref.statistic == math.inf and paired_t([1, 2], [0, 1]).p == ref.pvalue == 0
    assert paired_t([1, 2], [1, 2]) is None


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    lo, hi = bootstrap_ci(A, B, paired=True)
    assert lo < np.mean(np.subtract(A, B)) < hi
    assert (lo, hi) == bootstrap_ci(A, B, paired=True)
    assert min(np.subtract(A, B)) <= lo and hi <= max(np.subtract(A, B))  # resampled means stay in range
    lo2, hi2 = bootstrap_ci(A, B, paired=False)
    assert lo2 < np.mean(A) - np.mean(B) < hi2
    assert bootstrap_ci([1.0], [2.0], paired=True) is None


def test_holm_against_hand_computation():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.01]) == [pytest.approx(0.5), None, pytest.approx(0.02)]
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1, then kept monotone


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
    assert o.test.name == WELCH and o.effect_name == "g"
    assert o.test.p == pytest.approx(sps.ttest_ind(A, B, equal_var=False).pvalue)
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
def test_welch_matches_scipy(a, b):
    w = welch_t(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert w.t == pytest.approx(ref.statistic) and w.p == pytest.approx(ref.pvalue)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    assert w.dof == pytest.approx((va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)))


def test_welch_undefined_cases():
    assert welch_t([1.0], [1.0, 2.0]) is None and welch_t([1.0, 2.0], []) is None
    assert welch_t([1.0, 1.0], [2.0, 2.0]) is None  # no variance at all
