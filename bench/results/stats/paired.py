"""Comparisons against a baseline that hold up: paired tests across seeds, bootstrap intervals,
Holm's correction across the matrix, effect sizes and the seed noise of each scale.

Decisions (docs/statistics.md has the formulas and citations):

- Pairing. The same seed gives the same data order (and the same initialization stream), so a
  group and its scale's baseline are compared on per-seed differences d_s = L_group(s) - L_base(s)
  of final validation loss, over the seeds where both finished ok. With >= 2 such pairs: the paired
  t-test (two-sided, n-1 dof) on d, effect size Cohen's d_z = mean(d) / sd(d), and a bootstrap 95%
  CI of mean(d) (percentile method, 10,000 resamples, fixed generator seed: reruns print the same
  interval).
- Unpaired. With < 2 shared seeds (e.g. different seed lists): Welch's t-test on the two groups,
  Hedges' g (pooled-SD standardized difference with the small-sample correction), and a bootstrap
  CI of the difference of means (each group resampled on its own).
- Multiple comparisons. Holm's step-down correction over every test in the matrix (all scales
  together); better / worse is read off the Holm-adjusted p at alpha = 0.05.
- Few seeds. A comparison resting on fewer than 3 seeds (pairs, or the smaller group) carries a
  warning: with n = 2 a t-test has 1 dof and its p-value hardly means anything.
- Seed noise. Per scale, the sample SD of the baseline group's final losses over its seeds: the
  spread a rerun with another seed shows; a single-seed difference has SD sqrt(2) times that.
"""

from __future__ import annotations

import math
import statistics
import warnings
from dataclasses import dataclass

import numpy as np

from ..records import Record
from .groups import ALPHA, baseline_groups, final_val_loss, group_records, learned, parse_baseline

BOOTSTRAP = 10_000
MIN_SEEDS = 3
PAIRED, WELCH = "paired t", "Welch t"
NOT_LEARNED = "not learned"


@dataclass(frozen=True)
class Test:
    name: str  # PAIRED or WELCH
    t: float
    dof: float
    p: float


def paired_t(a, b) -> Test | None:
    """Two-sided paired t-test of a[i] - b[i] (scipy.stats.ttest_rel); None with < 2 pairs or all
    differences 0. Every pair differing by the same nonzero amount gives t = +-inf, p = 0."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2 or not np.any(d):
        return None
    from scipy.stats import ttest_rel

    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nearly identical pairs: scipy warns, the p stands
        r = ttest_rel(np.asarray(a, float), np.asarray(b, float))
    return Test(PAIRED, float(r.statistic), len(d) - 1, float(r.pvalue))


def welch_t(a, b) -> Test | None:
    """Two-sided Welch's unequal-variance t-test (scipy.stats.ttest_ind, equal_var=False); None
    with < 2 values in a group or no variance in either."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if va + vb <= 0:
        return None
    from scipy.stats import ttest_ind

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = ttest_ind(a, b, equal_var=False)
    return Test(WELCH, float(r.statistic), float(r.df), float(r.pvalue))


def cohens_dz(a, b) -> float | None:
    """Paired effect size: mean(a - b) / sd(a - b)."""
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2 or np.std(d, ddof=1) == 0:
        return None
    return float(np.mean(d) / np.std(d, ddof=1))


def hedges_g(a, b) -> float | None:
    """(mean a - mean b) / pooled SD, times J = 1 - 3 / (4 (na + nb) - 9) (Hedges & Olkin 1985)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    sp2 = ((na - 1) * np.var(a, ddof=1) + (nb - 1) * np.var(b, ddof=1)) / (na + nb - 2)
    if sp2 <= 0:
        return None
    return float((1 - 3 / (4 * (na + nb) - 9)) * (np.mean(a) - np.mean(b)) / math.sqrt(sp2))


def bootstrap_ci(a, b, paired: bool, confidence: float = 0.95, resamples: int = BOOTSTRAP,
                 seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap CI of mean(a - b) (paired) or mean(a) - mean(b) (unpaired, each group
    resampled on its own), by scipy.stats.bootstrap with a fixed generator seed: reruns print the
    same interval."""
    from scipy.stats import bootstrap

    a, b = np.asarray(a, float), np.asarray(b, float)
    if paired:
        if len(a) < 2:
            return None
        data, stat = (a - b,), (lambda d, axis=-1: np.mean(d, axis=axis))
    else:
        if len(a) < 2 or len(b) < 2:
            return None
        data, stat = (a, b), (lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis))
    with np.errstate(all="ignore"):
        r = bootstrap(data, stat, n_resamples=resamples, confidence_level=confidence, method="percentile",
                      vectorized=True, paired=False, rng=np.random.default_rng(seed))
    return float(r.confidence_interval.low), float(r.confidence_interval.high)


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None entries are not tests and stay None):
    sort the m p-values ascending, p_adj(i) = max over j <= i of min(1, (m - j + 1) p(j))."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for j, i in enumerate(idx):  # j is zero-based: the factor is m - j
        running = max(running, min(1.0, (m - j) * pvalues[i]))
        out[i] = running
    return out


def seed_noise(records, baseline=None) -> dict[str, float | None]:
    """scale -> sample SD of the baseline group's final validation losses over its seeds (None
    with fewer than 2 ok seeds)."""
    groups = group_records(records)
    out = {}
    baseline = parse_baseline(baseline) if isinstance(baseline, str) else baseline
    for scale, base in baseline_groups(records, baseline).items():
        losses = [v for r in groups.get((scale, *base), []) if (v := final_val_loss(r)) is not None] if base else []
        out[scale] = statistics.stdev(losses) if len(losses) >= 2 else None
    return out


@dataclass
class Paired:
    """One group against its scale's baseline."""

    scale: str
    group: tuple[str, str]
    baseline: tuple[str, str]
    n: int  # pairs (paired) or seeds of the group (unpaired)
    n_baseline: int
    diff: float | None  # mean difference of final validation loss (group - baseline)
    ci: tuple[float, float] | None  # bootstrap 95% CI of diff
    test: Test | None
    effect: float | None  # Cohen's d_z (paired) or Hedges' g (unpaired)
    seed_sd: float | None  # the scale's seed noise
    p_holm: float | None = None
    alpha: float = ALPHA
    note: str = ""

    @property
    def is_baseline(self) -> bool:
        return self.group == self.baseline

    @property
    def effect_name(self) -> str:
        return "" if self.test is None else ("d_z" if self.test.name == PAIRED else "g")

    @property
    def few_seeds(self) -> bool:
        return not self.is_baseline and min(self.n, self.n_baseline) < MIN_SEEDS

    @property
    def verdict(self) -> str:
        if self.is_baseline:
            return "baseline"
        if self.test is None:
            return self.note or "no test"
        if self.p_holm is None or self.p_holm >= self.alpha:
            return "n.s."
        return "better" if self.test.t < 0 else "worse"

    @property
    def mark(self) -> str:
        return {"better": "*", "worse": "†"}.get(self.verdict, "")


def _losses_by_seed(recs) -> dict[int, float]:
    return {r.seed: v for r in recs if (v := final_val_loss(r)) is not None}


def _test(mine: dict[int, float], theirs: dict[int, float]):
    """(test, effect, ci, n, n_baseline, diff, note): paired on shared seeds, else Welch."""
    shared = sorted(set(mine) & set(theirs))
    if len(shared) >= 2:
        a, b = [mine[s] for s in shared], [theirs[s] for s in shared]
        test = paired_t(a, b)
        return (test, cohens_dz(a, b), bootstrap_ci(a, b, paired=True), len(shared), len(shared),
                statistics.fmean(x - y for x, y in zip(a, b)),
                "" if test else "no test (every per-seed difference is 0)")
    a, b = list(mine.values()), list(theirs.values())
    test = welch_t(a, b)
    diff = statistics.fmean(a) - statistics.fmean(b) if a and b else None
    return (test, hedges_g(a, b), bootstrap_ci(a, b, paired=False), len(a), len(b), diff,
            "" if test else f"no test (n={len(a)} vs {len(b)}; needs >= 2 seeds per group)")


def versus(scale: str, group: tuple[str, str], base: tuple[str, str], recs: list[Record], base_recs: list[Record],
           seed_sd: float | None = None, alpha: float = ALPHA) -> Paired:
    """``recs`` (seed repeats of ``group``) against ``base_recs``: paired on shared seeds, else Welch
    (``p_holm`` is left to ``holm_adjust``). Not tested when either has not learned (``groups.learned``)."""
    mine, theirs = _losses_by_seed(recs), _losses_by_seed(base_recs)
    if learned(recs) is False or learned(base_recs) is False:
        diff = statistics.fmean(mine.values()) - statistics.fmean(theirs.values()) if mine and theirs else None
        return Paired(scale, group, base, len(mine), len(theirs), diff, None, None, None, seed_sd, alpha=alpha,
                      note=NOT_LEARNED)
    test, effect, ci, n, nb, diff, note = _test(mine, theirs)
    return Paired(scale, group, base, n, nb, diff, ci, test, effect, seed_sd, alpha=alpha, note=note)


def holm_adjust(comparisons) -> None:
    """Sets ``p_holm`` on every tested comparison, Holm's correction over all of them together."""
    tested = [c for c in comparisons if c.test is not None]
    for c, p in zip(tested, holm([c.test.p for c in tested])):
        c.p_holm = p


def compare(records: list[Record], baseline=None, alpha: float = ALPHA) -> dict[tuple[str, str, str], Paired]:
    """(scale, row label, norm) -> Paired comparison with the scale's baseline group (``versus``),
    Holm-adjusted over every test of the matrix. ``baseline``: None (each scale's first row x first
    column), (act, norm) or 'ACT:NORM'."""
    baseline = parse_baseline(baseline) if isinstance(baseline, str) else baseline
    groups = group_records(records)
    bases = baseline_groups(records, baseline)
    noise = seed_noise(records, baseline)
    out = {}
    for (scale, row, norm), recs in groups.items():
        base = bases.get(scale)
        if base is None:
            continue
        if (row, norm) == base:
            n = len(_losses_by_seed(recs))
            out[(scale, row, norm)] = Paired(scale, base, base, n, n, None, None, None, None, noise.get(scale),
                                             alpha=alpha)
            continue
        out[(scale, row, norm)] = versus(scale, (row, norm), base, recs, groups.get((scale, *base), []),
                                         noise.get(scale), alpha)
    holm_adjust(out.values())
    return out

