"""Seeds in rounds until every comparison is decided: the sequential rule behind training "until
decided, at most K seeds", its per-round bookkeeping, and what it saves against a fixed design.

The rule (docs/verdicts.md has it with an example):

- Looks. Every comparison is looked at after each seed its pairs gain, n = 2, 3, ..., K pairs (K:
  ``Design.max_seeds``); the paired t statistic of the first n per-seed differences at each look,
  in the order the seeds were added.
- Spending. Look n gets a share w_n of the error rate, w_n proportional to F(n/K) - F((n-1)/K)
  (look 2 takes F(2/K)), with Lan & DeMets' (1983) spending function of O'Brien-Fleming type,
  F(t) = 2 - 2 Phi(z_{0.975} / sqrt(t)) (default: almost nothing early, most at the end), or of
  Pocock type, F(t) = ln(1 + (e - 1) t).
- One-sided sequential p-value. For H0 "mean <= 0" on a path x: P* = min over looks of p_n / w_n,
  p_n the one-sided t-test p at look n. P(P* <= a) <= a by the union bound (valid, but it
  ignores that the looks share seeds). Under H0's boundary the path of t statistics has one
  distribution whatever the SD (it is scale-free), so the exact null law G(a) = P(P* <= a) is
  the same for every comparison and is simulated once per design (200,000 paths, fixed seed), as
  Westfall & Young's (1993) min-p adjustment does. The p-value is q = min(P*, G+(P*)), G+ the
  99.9% Clopper-Pearson upper bound of the simulated G: at or below the exact one except for a
  1-in-1,000 calibration draw, and checked against an independent simulation in the tests.
  q is a p-value at every level at once, so Holm (1979) applies to it across the matrix.
- Decisions. better: q of H0 "mean >= 0" (path -d); worse: q of H0 "mean <= 0" (path d); the
  two-sided p is 2 x the smaller. Equivalent within +-margin: q of H0 "mean <= -margin" (path
  d + margin) and of H0 "mean >= +margin" (path margin - d), the larger of the two (two one-sided
  tests; the boundary nulls are again scale-free, beyond them the test is conservative). Each of
  the two families is Holm-adjusted over the comparisons (``verdicts.verdicts``).
- Stopping. A comparison is decided when either Holm-adjusted q is below alpha; it then gets no
  more seeds. q only falls as looks are added and Holm is monotone, so a decision made at a round
  is still made by Holm on the final q's, and every final q is at least the q of the comparison's
  full K-seed path: the chance of any wrong better / worse (or any wrong equivalent) over all
  rounds and comparisons stays at alpha. The rounds may add several seeds at once: every prefix is
  a look of the design.
- Intervals. The test inverted: the 1 - 2b sequential interval is the intersection over looks of
  mean_n -+ t_{1 - x_b w_n, n-1} s_n / sqrt(n), x_b the calibrated threshold with G+(x_b) = b
  (Jennison & Turnbull 2000, repeated confidence intervals). Its 90% version lies inside
  +-margin exactly when the equivalence q < 0.05; its 95% version excludes 0 exactly when the
  two-sided q < 0.05.
- Fix K before the first round: choosing it after a look spends error rate the design never
  counted. Only shared seeds enter (paired differences); a comparison with one pair needs a seed.

``savings`` gives the design's power and expected seeds at a stated effect (simulated) and the
seeds a fixed design of equal power needs (noncentral t): "used N seeds where a fixed design of
equal power needs M".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .verdicts import (ALPHA, DEFAULT_MARGIN, UNDECIDED, Noise, Tests, Verdict, one_sided_p, paired_evidence,
                       seeds_to_decide, verdicts)

SPENDING = ("obf", "pocock")
CALIBRATION_PATHS = 200_000
CALIBRATION_SEED = 20_230_613
CALIBRATION_CONFIDENCE = 0.999
MAX_LOOKS = 100
SEQUENTIAL = "sequential paired t"


@dataclass(frozen=True)
class Design:
    """Looks at n = 2..max_seeds pairs, error rate spent by the named spending function."""

    max_seeds: int = 8
    spending: str = "obf"

    def __post_init__(self):
        if self.spending not in SPENDING:
            raise ValueError(f"spending must be one of {', '.join(SPENDING)}; got {self.spending!r}")
        if not 2 <= self.max_seeds <= MAX_LOOKS:
            raise ValueError(f"max_seeds must be 2 to {MAX_LOOKS}; got {self.max_seeds}")

    @property
    def looks(self) -> range:
        return range(2, self.max_seeds + 1)

    @property
    def weights(self) -> np.ndarray:
        """w_n for n = 2..max_seeds, summing to 1."""
        return _weights(self.max_seeds, self.spending)


def _spend(t: np.ndarray, spending: str) -> np.ndarray:
    from scipy.stats import norm

    if spending == "obf":
        return 2 - 2 * norm.cdf(norm.ppf(0.975) / np.sqrt(t))
    return np.log1p((math.e - 1) * t)


@lru_cache(maxsize=None)
def _weights(k: int, spending: str) -> np.ndarray:
    f = _spend(np.arange(1, k + 1) / k, spending)
    w = np.diff(np.concatenate([[0.0], f]))
    w = np.concatenate([[w[0] + w[1]], w[2:]])  # no test with one pair: its share goes to look 2
    w = w / w.sum()
    w.flags.writeable = False
    return w


def _prefix_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, sample SD, n) of each prefix of 2..n values of each row: (draws, n) -> (draws, n - 1)
    twice, and n. Sums of the values less the row's first (exact zeros for a constant row)."""
    y = x - x[:, :1]
    n = np.arange(2, x.shape[1] + 1)
    s, q = np.cumsum(y, axis=1)[:, 1:], np.cumsum(y * y, axis=1)[:, 1:]
    var = np.maximum(q - s * s / n, 0.0) / (n - 1)
    return s / n + x[:, :1], np.sqrt(var), n


def _prefix_p(x: np.ndarray) -> np.ndarray:
    """One-sided p of H0 "mean <= 0" on each prefix of each row: (draws, n) -> (draws, n - 1), the
    looks at 2..n."""
    mean, sd, n = _prefix_stats(x)
    return one_sided_p(mean, sd / np.sqrt(n), n - 1)[1]


def _running_pstar(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """min over the looks so far of p_n / w_n, after each look: (draws, n) -> (draws, n - 1)."""
    w = w[: x.shape[1] - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(w > 0, _prefix_p(x) / np.where(w > 0, w, 1.0), np.inf)  # a look given nothing tests nothing
    return np.minimum.accumulate(ratio, axis=1)


@lru_cache(maxsize=8)
def _null(k: int, spending: str) -> np.ndarray:
    """Sorted P* of CALIBRATION_PATHS null paths of length k (standard normal: the t statistics'
    joint law does not depend on the SD)."""
    rng = np.random.default_rng(CALIBRATION_SEED)
    w = _weights(k, spending)
    chunks = [_running_pstar(rng.standard_normal((25_000, k)), w)[:, -1] for _ in range(CALIBRATION_PATHS // 25_000)]
    out = np.sort(np.concatenate(chunks))
    out.flags.writeable = False
    return out


def _upper(counts: np.ndarray) -> np.ndarray:
    """Clopper-Pearson upper bound of G from the number of null P* at or below a value."""
    from scipy.special import betaincinv

    n = CALIBRATION_PATHS
    c = np.asarray(counts)
    with np.errstate(all="ignore"):
        ub = betaincinv(c + 1.0, np.maximum(n - c, 1).astype(float), CALIBRATION_CONFIDENCE)
    return np.where(c >= n, 1.0, ub)


def _q(pstar: np.ndarray, design: Design) -> np.ndarray:
    """q = min(1, P*, G+(P*))."""
    null = _null(design.max_seeds, design.spending)
    return np.minimum(1.0, np.minimum(pstar, _upper(np.searchsorted(null, pstar, side="right"))))


def _running_q(paths, design: Design) -> np.ndarray:
    """The sequential p-value of H0 "mean <= 0" after each look: (draws, n) -> (draws, n - 1)."""
    x = np.atleast_2d(np.asarray(paths, float))
    if x.shape[1] > design.max_seeds:
        raise ValueError(f"{x.shape[1]} seeds exceed the design's max_seeds {design.max_seeds}")
    return _q(_running_pstar(x, design.weights), design)


def sequential_p(paths, design: Design) -> np.ndarray | float:
    """The design's one-sided sequential p-value of H0 "mean <= 0" for each path (a sequence of
    per-seed values, or the rows of a 2-D array; every prefix of 2..len values is a look); 1 for a
    path of one value. Valid at every level: P(q <= a) <= a under H0, across all the looks."""
    x = np.asarray(paths, float)
    rows = np.atleast_2d(x)
    q = _running_q(rows, design)[:, -1] if rows.shape[1] >= 2 else np.ones(rows.shape[0])
    return float(q[0]) if x.ndim == 1 else q


@lru_cache(maxsize=64)
def _threshold(design: Design, b: float) -> float:
    """x_b: the supremum of the P* whose q is <= b (at least b: the union bound alone gives that)."""
    null = _null(design.max_seeds, design.spending)
    lo, hi = -1, len(null)  # the largest count k with G+(k) <= b lies in [lo, hi); G+ rises with k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _upper(np.array([mid]))[0] <= b else (lo, mid)
    return b if lo < 0 else max(b, float(null[lo]))


def _interval(d: np.ndarray, design: Design, b: float) -> tuple[float, float]:
    """The 1 - 2b sequential interval: the intersection of the looks' t intervals at the one-sided
    levels x_b w_n."""
    from scipy.special import stdtrit

    mean, sd, n = _prefix_stats(d[None, :])
    half = stdtrit(n - 1, 1 - np.minimum(_threshold(design, b) * design.weights[: len(n)], 0.5)) * sd / np.sqrt(n)
    return float(np.max(mean - half)), float(np.min(mean + half))


def sequential_tests(differences: Sequence[float], design: Design, margin: float = DEFAULT_MARGIN) -> Tests | None:
    """The sequential p-values and intervals of one comparison's per-seed differences (group -
    baseline, in the order the seeds were added); None with fewer than 2."""
    d = np.asarray(differences, float)
    if d.size < 2:
        return None
    better, worse, low, high = sequential_p(np.stack([-d, d, d + margin, margin - d]), design)
    return Tests(SEQUENTIAL, float(better), float(worse), float(max(low, high)), _interval(d, design, 0.05),
                 _interval(d, design, 0.025))


@dataclass(frozen=True)
class Status:
    """One comparison after a round."""

    verdict: Verdict
    seeds: int  # pairs so far
    decided: bool
    needs_seed: bool  # undecided and fewer than max_seeds pairs


def review(differences: Sequence[Sequence[float]], design: Design, *, alpha: float = ALPHA,
           margin: float = DEFAULT_MARGIN, noise: Noise | Sequence[Noise | None] | None = None,
           plan: bool = True) -> list[Status]:
    """The bookkeeping of a round: every comparison of the family (its per-seed differences in the
    order the seeds were added, >= 1 each) judged by the sequential tests, Holm-adjusted over the
    family; which are decided and which need another seed. ``plan=False`` skips the planning
    figures of undecided rows (the rounds need only ``needs_seed``)."""
    ds = [np.asarray(d, float) for d in differences]
    if any(d.size < 1 for d in ds):
        raise ValueError("every comparison needs at least one per-seed difference")
    evs = [paired_evidence(d) for d in ds]
    tests = [sequential_tests(d, design, margin) for d in ds]
    out = []
    for d, v in zip(ds, verdicts(evs, alpha=alpha, margin=margin, noise=noise, tests=tests, plan=plan)):
        decided = v.kind != UNDECIDED
        out.append(Status(v, int(d.size), decided, not decided and d.size < design.max_seeds))
    return out


# --- what the design costs and saves ---------------------------------------------------------------------

@dataclass(frozen=True)
class Savings:
    """The design at a stated true difference, for one comparison at ``level``."""

    effect: float  # true mean difference, nats
    sd: float  # SD of one per-seed difference
    level: float
    margin: float
    max_seeds: int
    power: float  # P(decided better / worse in the right direction)
    power_se: float  # its Monte Carlo standard error
    equivalent: float  # P(ends "equivalent")
    expected_seeds: float  # mean pairs used (a comparison stops when decided)
    expected_seeds_se: float
    fixed_seeds: int | None  # pairs a fixed design needs for the same power (None: effect 0)

    def describe(self, used: float | None = None) -> str:
        """One line; ``used``: the seeds a run actually used, instead of the expected number."""
        n = f"{self.expected_seeds:.1f} seeds on average" if used is None else f"{used:g} seeds"
        fixed = "no fixed design decides a difference of 0" if self.fixed_seeds is None else \
            f"a fixed design of equal power needs {self.fixed_seeds}"
        return (f"at {self.effect:+.3f} nats (SD {self.sd:.3f}) the sequential design (at most {self.max_seeds} "
                f"seeds) decides with {self.power:.0%} power: used {n} where {fixed}")


def simulate(design: Design, effect: float, sd: float, *, level: float = ALPHA, margin: float = DEFAULT_MARGIN,
             first: int = 2, draws: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(seeds used, outcome) of ``draws`` simulated comparisons with true difference ``effect``, each
    alone at ``level`` (no Holm step): outcome -1 better, +1 worse, 2 equivalent, 0 undecided at
    max_seeds. ``first``: the pairs at the first review (earlier prefixes still count as looks)."""
    k = design.max_seeds
    x = effect + sd * np.random.default_rng(seed).standard_normal((draws, k))
    better, worse = _running_q(-x, design), _running_q(x, design)
    equiv = np.maximum(_running_q(x + margin, design), _running_q(margin - x, design))
    diff = np.minimum(1.0, 2 * np.minimum(better, worse)) < level
    stop = diff | (equiv < level)
    stop[:, : max(first, 2) - 2] = False
    stop[:, -1] = True
    look = np.argmax(stop, axis=1)  # the first look that stops (the last one if none decides)
    rows = np.arange(draws)
    d, e = diff[rows, look], equiv[rows, look] < level
    outcome = np.where(d, np.where(better[rows, look] <= worse[rows, look], -1, 1), np.where(e, 2, 0))
    return look + 2, outcome


def savings(design: Design, effect: float, sd: float, *, level: float = ALPHA, margin: float = DEFAULT_MARGIN,
            first: int = 2, draws: int = 20_000, seed: int = 0) -> Savings:
    """Power and expected seeds of ``design`` at a true difference ``effect`` (``simulate``: Monte
    Carlo, its standard errors given), and the fixed-design seeds of equal power (``verdicts.power``,
    noncentral t). Per comparison at ``level``: alpha / m bounds a matrix of m under Holm. The
    comparison means most where the power is 0.5 to 0.95: near 1, "equal power" asks a fixed design
    for a certainty the sequential one reached by its last looks."""
    used, outcome = simulate(design, effect, sd, level=level, margin=margin, first=first, draws=draws, seed=seed)
    right = outcome == (-1 if effect < 0 else 1)
    pw = float(right.mean()) if effect else 0.0
    # all draws deciding says only that the power is above 1 - 1/draws: match that, not 1
    fixed = seeds_to_decide(effect, sd, level, target=min(pw, 1 - 1 / draws)) if effect and pw > level else None
    return Savings(effect, sd, level, margin, design.max_seeds, pw, math.sqrt(pw * (1 - pw) / draws),
                   float(np.mean(outcome == 2)), float(used.mean()), float(used.std(ddof=1) / math.sqrt(draws)),
                   fixed)
