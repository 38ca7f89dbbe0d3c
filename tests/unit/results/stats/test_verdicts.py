"""bench.results.stats.verdicts: the tests against scipy, and every verdict against simulations with a
known truth (fixed generator seeds; each assertion states its Monte Carlo tolerance, in standard
errors SE = sqrt(p (1 - p) / draws) of the simulated rate)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import integrate, stats

from bench.results.stats.verdicts import (BETTER, EQUIVALENT, PAIRED, PRIOR_NOISE, PRIOR_SEED_SD, UNDECIDED, WELCH,
                                          WORSE, Noise, detectable_difference, equivalence_p, evidence, fixed_tests,
                                          holm, one_sided_p, paired_evidence, pooled_noise, power, seeds_to_decide,
                                          seeds_to_show_equivalence, tost_power, unpaired_evidence, verdicts)

ROOT = Path(__file__).resolve().parents[4]
ALPHA, MARGIN = 0.05, 0.01


def se(p: float, draws: int) -> float:
    return math.sqrt(p * (1 - p) / draws)


def paired_stats(d: np.ndarray):
    """(mean, se, dof) of each row of per-seed differences."""
    n = d.shape[1]
    return d.mean(1), d.std(1, ddof=1) / math.sqrt(n), n - 1


def two_sided(d: np.ndarray) -> np.ndarray:
    lo, hi = one_sided_p(*paired_stats(d))
    return np.minimum(1.0, 2 * np.minimum(lo, hi))


# --- the tests themselves -------------------------------------------------------------------------------

def test_p_values_are_scipys_t_tests():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n, m = rng.integers(2, 12), rng.integers(2, 12)
        a, b = rng.normal(3, 0.02, n), rng.normal(3.01, rng.uniform(0.005, 0.05), n)
        t = fixed_tests(paired_evidence(a - b))
        assert t.name == PAIRED and t.p == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9, abs=1e-14)
        c = rng.normal(3.0, 0.03, m)
        t = fixed_tests(unpaired_evidence(a, c))
        welch = stats.ttest_ind(a, c, equal_var=False).statistic  # Welch's statistic, Hsu's dof
        assert t.name == WELCH
        assert t.p == pytest.approx(2 * stats.t.sf(abs(welch), min(n, m) - 1), rel=1e-9, abs=1e-14)


def test_equivalence_p_is_the_interval_inside_the_margin():
    """TOST at alpha passes exactly when the 1 - 2 alpha t interval lies inside +-margin."""
    rng = np.random.default_rng(2)
    agree = 0
    for _ in range(500):
        d = rng.normal(rng.uniform(-0.015, 0.015), rng.uniform(0.001, 0.02), rng.integers(2, 20))
        t = fixed_tests(paired_evidence(d), MARGIN)
        inside = -MARGIN < t.ci90[0] and t.ci90[1] < MARGIN
        assert (t.p_equiv < ALPHA) == inside
        agree += inside
    assert 20 < agree < 480  # both outcomes occur


def test_degenerate_differences():
    same = fixed_tests(paired_evidence([0.0, 0.0, 0.0]))
    assert same.p == 1.0 and same.p_equiv == 0.0  # identical runs: no difference, within any margin
    shift = fixed_tests(paired_evidence([-0.02, -0.02, -0.02]))
    assert shift.p == 0.0 and shift.p_better == 0.0 and shift.p_equiv == 1.0
    assert fixed_tests(paired_evidence([0.01])) is None


def test_a_noise_of_zero_plans_with_the_prior():
    """Seeds that all ended alike (copies of one run) pool to a noise of zero: the planning falls back
    to the prior instead of failing (the damaged-records property test found a traceback here)."""
    one_seed = evidence({0: 3.00}, {0: 3.02})
    (v,) = verdicts([one_seed], noise=Noise(0.0, 4, "pooled over 2 other comparisons"))
    assert v.kind == UNDECIDED and v.noise_sd == PRIOR_NOISE.sd and v.seeds_to_decide is not None


def test_holm_matches_the_hand_computation():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, max(0.03, 2 x 0.03), max(0.06, 1 x 0.04)
    assert holm([0.01, 0.04, None, 0.03, 0.005]) == pytest.approx([0.03, 0.06, None, 0.06, 0.02])
    assert holm([]) == [] and holm([None]) == [None] and holm([0.7, 0.9]) == [1.0, 1.0]


def test_evidence_pairs_on_shared_seeds_else_welch_else_one_seed():
    ev = evidence({0: 3.0, 1: 3.1, 2: 3.05}, {0: 3.01, 1: 3.12, 5: 2.0})
    assert ev.paired and ev.n == 2 and ev.diff == pytest.approx(-0.015)
    ev = evidence({0: 3.0, 1: 3.1}, {2: 3.01, 3: 3.12})
    assert not ev.paired and ev.test == WELCH and ev.n == 2
    ev = evidence({0: 3.0}, {0: 3.01, 1: 3.02})
    assert ev.paired and ev.n == 1 and ev.se is None and ev.test is None
    assert evidence({}, {0: 3.0}) is None


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="finite"):
        paired_evidence([0.01, float("nan")])
    with pytest.raises(ValueError, match="margin"):
        verdicts([paired_evidence([0.01, 0.02])], margin=0)
    with pytest.raises(ValueError, match="sd > 0"):
        power(0.01, 0.0, 5)


# --- error rates under a known truth ---------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 5, 8, 12])
@pytest.mark.parametrize("sd", [0.005, 0.015, 0.05])
def test_wrong_better_or_worse_at_most_alpha_under_the_null(n, sd):
    draws = 4000
    d = np.random.default_rng(n * 1000 + int(sd * 1e4)).normal(0, sd, (draws, n))
    rate = float(np.mean(two_sided(d) < ALPHA))
    assert rate <= ALPHA + 3 * se(ALPHA, draws)  # one-sided: the rate must not exceed alpha + 3 SE


def welch_rates(na, nb, ratio, draws, seed):
    """(rate with Welch-Satterthwaite dof, rate through unpaired_evidence) of p < alpha, equal means."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 0.015, (draws, na)), rng.normal(0, 0.015 * ratio, (draws, nb))
    va, vb = a.var(1, ddof=1) / na, b.var(1, ddof=1) / nb
    ws = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    lo, hi = one_sided_p(a.mean(1) - b.mean(1), np.sqrt(va + vb), ws)
    ours = [fixed_tests(unpaired_evidence(x, y)).p for x, y in zip(a[:2000], b[:2000])]
    return float(np.mean(np.minimum(1, 2 * np.minimum(lo, hi)) < ALPHA)), float(np.mean(np.array(ours) < ALPHA))


@pytest.mark.parametrize("na,nb,ratio", [(2, 3, 3.0), (3, 5, 0.3), (5, 3, 3.0), (4, 4, 2.0), (6, 3, 1.0), (8, 2, 4.0)])
def test_unpaired_wrong_better_or_worse_at_most_alpha(na, nb, ratio):
    """Through ``unpaired_evidence`` (2,000 draws): at most alpha + 3 SE at every variance ratio."""
    _, rate = welch_rates(na, nb, ratio, 2000, seed=na * 10 + nb)
    assert rate <= ALPHA + 3 * se(ALPHA, 2000)


def test_welch_satterthwaite_dof_would_exceed_alpha():
    """Why the unpaired test takes min(n) - 1 dof: 3 vs 5 seeds, the larger variance in the smaller
    arm, Welch-Satterthwaite rejects a true null about 6.4% of the time (20,000 draws: > alpha + 3 SE)."""
    rate, _ = welch_rates(3, 5, 0.3, 20_000, seed=35)
    assert rate > ALPHA + 3 * se(ALPHA, 20_000)


def shared_baseline(rng, draws, m, n, sd, effects):
    """Per-seed differences of m groups against one baseline: (draws, m, n), correlated through it."""
    base = rng.normal(0, sd, (draws, 1, n))
    return rng.normal(0, sd, (draws, m, n)) + np.asarray(effects).reshape(1, m, 1) - base


@pytest.mark.parametrize("n", [3, 5])
def test_holm_holds_the_family_wise_rate_of_wrong_better_worse(n):
    """A matrix of 5 comparisons against one baseline, all truly equal: the chance of any better /
    worse verdict, read through ``verdicts``, is at most alpha (+3 SE); uncorrected it is far above."""
    draws, m = 1000, 5
    d = shared_baseline(np.random.default_rng(10 + n), draws, m, n, 0.015, [0.0] * m)
    wrong = 0
    for row in d:
        vs = verdicts([paired_evidence(x) for x in row], plan=False)
        wrong += any(v.kind in (BETTER, WORSE) for v in vs)
    assert wrong / draws <= ALPHA + 3 * se(ALPHA, draws)
    naive = float(np.mean(np.any(two_sided(d.reshape(-1, n)).reshape(draws, m) < ALPHA, axis=1)))
    assert naive > ALPHA + 3 * se(ALPHA, draws)  # the inflation Holm removes (about 0.16 here)


@pytest.mark.parametrize("n", [3, 5, 10, 20, 40])
@pytest.mark.parametrize("truth", [MARGIN, -MARGIN, 1.5 * MARGIN])
@pytest.mark.parametrize("sd", [0.003, 0.015])
def test_wrong_equivalent_at_most_alpha_at_and_beyond_the_margin(n, truth, sd):
    draws = 4000
    d = np.random.default_rng([n, int(1e4 * abs(truth)), int(truth < 0), int(1e4 * sd)]).normal(truth, sd, (draws, n))
    rate = float(np.mean(equivalence_p(*paired_stats(d), MARGIN) < ALPHA))
    assert rate <= ALPHA + 3 * se(ALPHA, draws)


def test_the_equivalence_rate_sits_at_alpha_on_the_boundary():
    """Not only below: with a small SD the test is exact at the margin (alpha within 3 SE)."""
    draws = 20_000
    d = np.random.default_rng(3).normal(MARGIN, 0.003, (draws, 20))
    rate = float(np.mean(equivalence_p(*paired_stats(d), MARGIN) < ALPHA))
    assert abs(rate - ALPHA) <= 3 * se(ALPHA, draws)


def test_holm_holds_the_family_wise_rate_of_wrong_equivalent():
    """4 comparisons whose true differences sit on the margin: the chance of any "equivalent",
    through ``verdicts``, is at most alpha (+3 SE); four uncorrected TOSTs give about 1 - 0.95^4."""
    draws, m, n = 1000, 4, 20
    d = shared_baseline(np.random.default_rng(4), draws, m, n, 0.002, [MARGIN, -MARGIN, MARGIN, -MARGIN])
    wrong = 0
    for row in d:
        wrong += any(v.kind == EQUIVALENT or v.within_margin for v in verdicts([paired_evidence(x) for x in row],
                                                                              plan=False))
    assert wrong / draws <= ALPHA + 3 * se(ALPHA, draws)
    naive = float(np.mean(np.any((equivalence_p(*paired_stats(d.reshape(-1, n)), MARGIN) < ALPHA)
                                 .reshape(draws, m), axis=1)))
    assert naive > ALPHA + 3 * se(ALPHA, draws)


# --- power and planning ----------------------------------------------------------------------------------

def simulated_power(effect, sd, n, level, draws=4000, seed=0):
    d = np.random.default_rng(seed).normal(effect, sd, (draws, n))
    return float(np.mean(two_sided(d) < level))


def simulated_tost(effect, sd, n, level, draws=4000, seed=0):
    d = np.random.default_rng(seed).normal(effect, sd, (draws, n))
    return float(np.mean(equivalence_p(*paired_stats(d), MARGIN) < level))


def test_power_matches_simulation():
    """45 grid points; each within 4 SE (a chance miss anywhere in the grid is ~0.3%)."""
    draws = 4000
    for i, (n, es, level) in enumerate((n, es, level) for n in (2, 3, 5, 8, 12) for es in (0.5, 1.0, 2.0)
                                       for level in (0.05, 0.01, 0.05 / 8)):
        sd = (0.005, 0.015, 0.05)[(i // 3) % 3]  # the power depends on effect / sd only: vary both
        want = power(es * sd, sd, n, level)
        got = simulated_power(es * sd, sd, n, level, draws, seed=i)
        assert abs(got - want) <= 4 * se(min(max(want, 0.01), 0.99), draws), (n, es, level, got, want)


@pytest.mark.parametrize("n,sd,level", [(3, 0.015, 0.05), (5, 0.01, 0.05), (8, 0.02, 0.0125), (4, 0.015, 0.01)])
def test_detectable_difference_has_the_target_power(n, sd, level):
    mde = detectable_difference(sd, n, level)
    assert power(mde, sd, n, level) == pytest.approx(0.8, abs=1e-6)
    draws = 10_000
    assert abs(simulated_power(mde, sd, n, level, draws, seed=n) - 0.8) <= 3 * se(0.8, draws)


@pytest.mark.parametrize("effect,sd,level", [(-0.011, 0.015, 0.05), (0.02, 0.015, 0.05 / 8), (0.03, 0.01, 0.05),
                                             (-0.008, 0.02, 0.01)])
def test_seeds_to_decide_is_the_fewest_with_the_target_power(effect, sd, level):
    n = seeds_to_decide(effect, sd, level)
    assert power(effect, sd, n, level) >= 0.8 and (n == 2 or power(effect, sd, n - 1, level) < 0.8)
    draws = 4000
    assert simulated_power(effect, sd, n, level, draws, seed=1) >= 0.8 - 3 * se(0.8, draws)
    if n > 2:
        assert simulated_power(effect, sd, n - 1, level, draws, seed=2) < 0.8 + 3 * se(0.8, draws)


def test_tost_power_is_the_exact_integral():
    """Against scipy.integrate.quad over the sample SD, written independently."""
    def by_quad(effect, sd, n, level):
        k, tc = n - 1, stats.t.ppf(1 - level, n - 1)

        def f(s):
            half = MARGIN - tc * s / math.sqrt(n)
            p = stats.norm.cdf(half, effect, sd / math.sqrt(n)) - stats.norm.cdf(-half, effect, sd / math.sqrt(n))
            return p * stats.chi2.pdf(k * s * s / sd ** 2, k) * 2 * k * s / sd ** 2

        return integrate.quad(f, 0, MARGIN * math.sqrt(n) / tc, limit=200)[0]

    for args in [(0, 0.015, 10, 0.05), (0.005, 0.015, 20, 0.05), (0, 0.02, 2, 0.05), (0.003, 0.01, 100, 0.00625),
                 (-0.007, 0.008, 15, 0.01)]:
        assert tost_power(args[0], args[1], args[2], MARGIN, args[3]) == pytest.approx(by_quad(*args), abs=1e-7)


def test_tost_power_matches_simulation():
    """36 grid points; each within 4 SE."""
    draws = 4000
    for i, (n, frac, sd, level) in enumerate((n, f, sd, lv) for n in (3, 5, 10, 20) for f in (0.0, 0.5, 0.9)
                                             for sd, lv in ((0.003, 0.05), (0.008, 0.05), (0.005, 0.0125))):
        want = tost_power(frac * MARGIN, sd, n, MARGIN, level)
        got = simulated_tost(frac * MARGIN, sd, n, level, draws, seed=100 + i)
        assert abs(got - want) <= 4 * se(min(max(want, 0.01), 0.99), draws), (n, frac, sd, level, got, want)


@pytest.mark.parametrize("effect,sd,level", [(0.0, 0.015, 0.05), (-0.004, 0.01, 0.05), (0.006, 0.005, 0.05 / 4)])
def test_seeds_to_show_equivalence_is_the_fewest_with_the_target_power(effect, sd, level):
    n = seeds_to_show_equivalence(effect, sd, MARGIN, level)
    assert tost_power(effect, sd, n, MARGIN, level) >= 0.8 > tost_power(effect, sd, n - 1, MARGIN, level)
    draws = 4000
    assert simulated_tost(effect, sd, n, level, draws, seed=3) >= 0.8 - 3 * se(0.8, draws)
    assert simulated_tost(effect, sd, n - 1, level, draws, seed=4) < 0.8 + 3 * se(0.8, draws)


def test_equivalence_beyond_the_margin_cannot_be_shown():
    assert seeds_to_show_equivalence(0.01, 0.015, MARGIN) is None
    assert seeds_to_show_equivalence(-0.02, 0.015, MARGIN) is None
    assert seeds_to_decide(0.0, 0.015) is None


# --- verdicts, their noise and their reading -------------------------------------------------------------

def ladder_example() -> dict[str, dict[int, float]]:
    """The committed ladder's groups (every config field but the seed) -> seed -> final val loss."""
    groups: dict[str, dict[int, float]] = {}
    for path in sorted((ROOT / "results" / "ladder-example").glob("*/record.json")):
        r = json.loads(path.read_text())
        assert r["status"] == "ok" and r["scale"] == "micro"
        key = json.dumps({k: v for k, v in r["config"].items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, {})[r["seed"]] = float(r["metrics"]["val_loss"])
    return groups


def test_the_prior_noise_is_the_ladder_examples_seed_noise():
    """PRIOR_SEED_SD recomputed from the committed records: the SD over seeds of each group's final
    validation loss, pooled over the groups."""
    groups = ladder_example()
    assert len(groups) == 10 and all(len(v) == 2 for v in groups.values())
    noise = pooled_noise(groups=[list(v.values()) for v in groups.values()])
    assert noise.dof == 10
    assert noise.sd / math.sqrt(2) == pytest.approx(PRIOR_SEED_SD, abs=5e-5)
    assert PRIOR_NOISE.sd == pytest.approx(math.sqrt(2) * PRIOR_SEED_SD)


def test_the_margin_reasons_in_the_docs():
    """docs/statistics.md, section 4: the paired SD of the ladder (polynorm - swiglu per rung and
    seed, pooled: 0.0092, 5 dof) and the seeds each margin needs at it and at the prior."""
    groups = ladder_example()
    by_rung: dict[str, dict[str, dict[int, float]]] = {}
    for key, seeds in groups.items():
        cfg = json.loads(key)
        rung = json.dumps({k: v for k, v in cfg.items() if k != "model"} | {
            "model": {k: v for k, v in cfg["model"].items() if k != "activation"}}, sort_keys=True)
        by_rung.setdefault(rung, {})[cfg["model"]["activation"]] = seeds
    diffs = [[arms["polynorm"][s] - arms["swiglu"][s] for s in (0, 1)] for arms in by_rung.values()]
    paired = pooled_noise(differences=diffs)
    assert len(diffs) == 5 and paired.dof == 5 and round(paired.sd, 4) == 0.0092
    text = " ".join((ROOT / "docs" / "statistics.md").read_text().split())
    need = [seeds_to_show_equivalence(0.0, sd, m) for m in (0.01, 0.005) for sd in (paired.sd, PRIOR_NOISE.sd)]
    assert need == [9, 38, 31, 148]
    assert "takes 9 to 38 seeds" in text and "would take 31 to 148" in text
    assert "between 0.009 (measured there with pairing) and 0.021 (sqrt(2) x 0.0146, no pairing)" in text


def test_the_undecided_example_in_the_docs():
    line = verdicts([paired_evidence(d) for d in ([-0.03, -0.025, -0.029], [0.001, -0.002, 0.0015, 0.0005],
                                                  [-0.011, 0.005, -0.02], [0.01])])[2].text
    assert line == ("undecided: -0.009 nats; 3 seeds could detect 0.083 nats; 27 seeds would decide -0.009; "
                    "860 seeds would show equivalence within ±0.010 (80% power at 0.05/4)")
    assert " ".join((ROOT / "docs" / "verdicts.md").read_text().split()).count(f"`{line}`") == 1


def test_pooled_noise_prefers_differences_then_groups():
    n = pooled_noise(differences=[[0.01, 0.03], [0.0, 0.01, 0.02], [0.5]], where=" at micro")
    # sums of squares 0.0002 + 0.0002 over 1 + 2 dof
    assert n.sd == pytest.approx(math.sqrt(0.0004 / 3)) and n.dof == 3
    assert n.source == "pooled over 2 other comparisons at micro (3 dof)"
    n = pooled_noise(differences=[[0.5]], groups=[[3.0, 3.02]])
    assert n.sd == pytest.approx(math.sqrt(2) * 0.02 / math.sqrt(2)) and "sqrt(2)" in n.source
    assert pooled_noise(differences=[[0.1]], groups=[[3.0]]) is None


def test_each_verdict_and_its_reading():
    better = paired_evidence([-0.03, -0.025, -0.029, -0.027])
    worse = paired_evidence([0.03, 0.025, 0.029, 0.027])
    same = paired_evidence([0.001, -0.002, 0.0015, 0.0005, -0.001])
    unsure = paired_evidence([-0.011, 0.005, -0.02])
    one = paired_evidence([0.004])
    vs = verdicts([better, worse, same, unsure, one, None],
                  noise=[None, None, None, None, Noise(0.012, 6, "pooled over 3 other comparisons at micro (6 dof)"),
                         None])
    assert [v.kind if v else None for v in vs] == [BETTER, WORSE, EQUIVALENT, UNDECIDED, UNDECIDED, None]
    assert vs[0].text.startswith("better: -0.028 nats (95% CI") and vs[0].mde is None
    assert vs[2].text.startswith("equivalent within ±0.010: ") and vs[2].within_margin
    u = vs[3]
    assert u.level == pytest.approx(0.05 / 5) and u.noise_source == "its own 3 seeds"
    assert u.mde == pytest.approx(detectable_difference(u.noise_sd, 3, 0.01))
    assert u.seeds_to_decide == seeds_to_decide(u.diff, u.noise_sd, 0.01)
    assert u.seeds_to_show_equivalence == seeds_to_show_equivalence(u.diff, u.noise_sd, MARGIN, 0.01)
    assert f"3 seeds could detect {u.mde:.3f} nats; {u.seeds_to_decide} seeds would decide -0.009" in u.text
    o = vs[4]
    assert o.test is None and o.mde is None and o.noise_sd == 0.012 and "pooled over 3 other comparisons" in o.text
    assert "1 seed tests nothing" in o.text and o.seeds_to_decide == seeds_to_decide(0.004, 0.012, 0.01)
    alone = verdicts([one])[0]
    assert alone.noise_source == PRIOR_NOISE.source and "ladder-example" in alone.text
    far = verdicts([paired_evidence([0.02, 0.01, 0.03])])[0]
    assert far.seeds_to_show_equivalence is None and "cannot be shown (|+0.020| >= 0.010)" in far.text


def test_a_significant_difference_inside_the_margin_is_marked():
    v = verdicts([paired_evidence([-0.003, -0.0031, -0.0029, -0.003, -0.0032])])[0]
    assert v.kind == BETTER and v.within_margin and v.text.endswith("within ±0.010")


def test_importing_the_module_loads_no_scipy():
    code = "import sys, bench.results.stats.verdicts, bench.results.stats.sequential; print('scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
