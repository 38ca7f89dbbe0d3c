"""The verdict of a comparison against its baseline: better, worse, equivalent within a margin, or
undecided with what would decide it. Pure functions of the per-seed final validation losses (nats);
no I/O. docs/verdicts.md explains the verdicts, docs/statistics.md ("Verdicts") the margin.

Decisions:

- Evidence. Paired on the seeds both arms share (same seed = same data order), the per-seed
  differences d = L_group - L_base (negative: the group is better); Welch's unequal-variance t when
  fewer than 2 seeds are shared and each arm has >= 2, with min(n_a, n_b) - 1 dof (conservative
  at every variance ratio; Welch-Satterthwaite's dof is not at 2-5 seeds); otherwise (one seed) no
  test at all: a difference of two single runs is never decided on a noise estimated elsewhere.
- Better / worse. The two-sided t-test of mean(d) = 0, as twice the smaller one-sided p-value (the
  paired p is scipy.stats.ttest_rel's), Holm-adjusted over every tested
  comparison of the family (the matrix); decided at p_holm < alpha, the sign of the smaller one-sided
  p gives the direction.
- Equivalent within +-margin. Two one-sided tests (Schuirmann 1987): H0 mean <= -margin and
  H0 mean >= +margin, p_equiv = the larger of the two one-sided p-values. For one comparison this is
  "the 1 - 2 alpha (90%) t interval lies inside (-margin, +margin)". A matrix makes m equivalence
  claims at once, so p_equiv is Holm-adjusted over the family too (a family separate from the
  better / worse one): the chance of any wrong "equivalent" stays at alpha whatever the true
  differences (simulated in tests/unit/results/stats/test_verdicts.py). A comparison both
  significantly different and within the margin reads better / worse, with ``within_margin`` set.
- Undecided. What would decide it, at 80% power and at the planning level alpha / m (Bonferroni:
  p < alpha / m guarantees p_holm < alpha whatever the other comparisons show):
  (a) the smallest difference the current seeds could detect (noncentral t, scipy.stats.nct);
  (b) the seeds that would decide the observed difference, if it were the true one;
  (c) the seeds that would show equivalence within +-margin, if the observed difference were the
      true one (exact TOST power; impossible when |observed| >= margin).
  The SD of one per-seed difference is the comparison's own when it has one; else ``Noise`` from
  elsewhere (``pooled_noise``: other comparisons of the same scale in the same records), else
  ``PRIOR_NOISE``; the verdict names its source. Planning assumes the added seeds are shared by both
  arms (paired); an unpaired comparison's SD of a difference is sqrt(s_a^2 + s_b^2), no credit for
  pairing. (b) and (c) take the observed difference as the truth, which it is only approximately.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
POWER = 0.8
DEFAULT_MARGIN = 0.01  # nats of final validation loss; docs/statistics.md, "Verdicts", gives the reasons
MAX_SEEDS = 10_000  # planning searches stop here: "more than 10,000 seeds"

BETTER, WORSE, EQUIVALENT, UNDECIDED = "better", "worse", "equivalent", "undecided"
PAIRED, WELCH = "paired t", "Welch t"


@dataclass(frozen=True)
class Evidence:
    """One comparison reduced to what the tests need. ``diff``: mean difference of final validation
    loss, group - baseline, nats (negative: the group is better)."""

    diff: float
    se: float | None  # standard error of diff; None: no test (a single seed on either side)
    dof: float | None  # degrees of freedom of the t statistic
    n: int  # pairs (paired) or the smaller arm's seeds (unpaired)
    sd: float | None  # SD of one per-seed difference (unpaired: sqrt(s_a^2 + s_b^2)); None with one seed
    paired: bool

    @property
    def test(self) -> str | None:
        return None if self.se is None else (PAIRED if self.paired else WELCH)


def paired_evidence(differences: Sequence[float]) -> Evidence:
    """Per-seed differences (group - baseline over shared seeds) -> paired evidence; one difference
    gives no test."""
    d = np.asarray(differences, float)
    if d.size < 1 or not np.all(np.isfinite(d)):
        raise ValueError(f"paired_evidence needs one or more finite per-seed differences; got {d.tolist()}")
    if d.size < 2:
        return Evidence(float(d[0]), None, None, 1, None, True)
    sd = float(np.std(d, ddof=1))
    return Evidence(float(d.mean()), sd / math.sqrt(d.size), d.size - 1, int(d.size), sd, True)


def unpaired_evidence(group: Sequence[float], baseline: Sequence[float]) -> Evidence:
    """Two arms without shared seeds -> Welch's statistic with min(n_a, n_b) - 1 degrees of freedom
    (Hsu 1938): Welch-Satterthwaite's dof let a wrong better / worse through 6.4% of the time at
    alpha = 0.05 with 3 and 5 seeds and the larger variance in the smaller arm (the tests show it);
    with min(n) - 1 the test is conservative at every variance ratio (Mickey & Brown 1966). An arm
    with one seed gives no test."""
    a, b = np.asarray(group, float), np.asarray(baseline, float)
    if a.size < 1 or b.size < 1 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError(f"unpaired_evidence needs one or more finite losses per arm; got {a.tolist()}, {b.tolist()}")
    diff, n = float(a.mean() - b.mean()), int(min(a.size, b.size))
    if n < 2:
        return Evidence(diff, None, None, n, None, False)
    va, vb = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    se2 = va / a.size + vb / b.size
    if se2 == 0:
        return Evidence(diff, 0.0, float(n - 1), n, 0.0, False)
    return Evidence(diff, math.sqrt(se2), float(n - 1), n, math.sqrt(va + vb), False)


def evidence(group: Mapping[int, float], baseline: Mapping[int, float]) -> Evidence | None:
    """seed -> final loss of each arm -> paired evidence on the shared seeds (in seed order) when
    there are >= 2, else Welch on all seeds when each arm has >= 2, else the single-seed difference
    (no test). None when an arm has no seed."""
    if not group or not baseline:
        return None
    shared = sorted(set(group) & set(baseline))
    if len(shared) >= 2 or (shared and min(len(group), len(baseline)) < 2):
        return paired_evidence([group[s] - baseline[s] for s in shared])
    return unpaired_evidence(list(group.values()), list(baseline.values()))


@dataclass(frozen=True)
class Noise:
    """The SD of one per-seed difference, for planning when a comparison has none of its own."""

    sd: float  # nats
    dof: int | None  # what it rests on
    source: str  # where it came from, in words


def _pooled(samples: Iterable[Sequence[float]]) -> tuple[float, int, int] | None:
    ss = dof = k = 0
    for s in samples:
        x = np.asarray(s, float)
        if x.size >= 2:
            ss, dof, k = ss + float(np.sum((x - x.mean()) ** 2)), dof + x.size - 1, k + 1
    return (math.sqrt(ss / dof), dof, k) if dof else None


def pooled_noise(differences: Iterable[Sequence[float]] = (), groups: Iterable[Sequence[float]] = (),
                 where: str = "") -> Noise | None:
    """A noise estimate from other comparisons: the pooled SD of their per-seed differences (each
    with >= 2), else sqrt(2) x the pooled SD of groups' final losses over seeds (each with >= 2: the
    difference of two independent runs); None when neither has 2 values. ``where`` ends the source,
    e.g. " at micro"."""
    if p := _pooled(differences):
        sd, dof, k = p
        return Noise(sd, dof, f"pooled over {k} other comparison{'s' * (k > 1)}{where} ({dof} dof)")
    if p := _pooled(groups):
        sd, dof, k = p
        return Noise(math.sqrt(2) * sd, dof,
                     f"sqrt(2) x the seed SD pooled over {k} group{'s' * (k > 1)}{where} ({dof} dof)")
    return None


# results/ladder-example (micro scale, 10 groups x 2 seeds): the sample SD of final validation loss
# over seeds, pooled over its groups, is 0.0146 nats with 10 dof (recomputed from the records in
# tests/unit/results/stats/test_verdicts.py). sqrt(2) x that is the SD of a difference of two runs;
# there, pairing made the per-seed differences smaller (0.0092, 5 dof), so this prior errs towards
# more seeds.
PRIOR_SEED_SD = 0.0146
PRIOR_NOISE = Noise(math.sqrt(2) * PRIOR_SEED_SD, 10,
                    "prior: sqrt(2) x the seed SD 0.0146 of results/ladder-example (micro scale)")


@dataclass(frozen=True)
class Tests:
    """The p-values and intervals a verdict is read from (fixed-sample t tests, ``fixed_tests``, or
    a sequential design's, ``sequential.sequential_tests``)."""

    name: str
    p_better: float  # one-sided p of "the mean difference is < 0"
    p_worse: float  # one-sided p of "the mean difference is > 0"
    p_equiv: float  # two one-sided tests against -margin and +margin: the larger p
    ci90: tuple[float, float]
    ci95: tuple[float, float]

    @property
    def p(self) -> float:
        """Two-sided p of "the mean difference is 0"."""
        return min(1.0, 2 * min(self.p_better, self.p_worse))


def one_sided_p(diff, se, dof):
    """(p_better, p_worse): P(T <= t) and P(T >= t) for t = diff / se, T ~ t(dof); numpy-vectorized.
    se = 0: 0 for the side diff lies on, 1 for the other (both 1 when diff = 0)."""
    from scipy.special import stdtr

    diff, se, dof = np.broadcast_arrays(*(np.asarray(x, float) for x in (diff, se, dof)))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, diff / np.where(se > 0, se, 1.0), np.sign(diff) * np.inf)
        low, high = stdtr(dof, t), stdtr(dof, -t)
    zero = (se <= 0) & (diff == 0)
    return np.where(zero, 1.0, low), np.where(zero, 1.0, high)


def equivalence_p(diff, se, dof, margin):
    """TOST p-value: the larger of the one-sided p of H0 mean <= -margin and of H0 mean >= +margin;
    numpy-vectorized. Below alpha exactly when the 1 - 2 alpha t interval lies inside +-margin."""
    _, p_low = one_sided_p(np.asarray(diff, float) + margin, se, dof)  # evidence that mean > -margin
    p_high, _ = one_sided_p(np.asarray(diff, float) - margin, se, dof)  # evidence that mean < +margin
    out = np.maximum(p_low, p_high)
    return out if out.ndim else float(out)


def t_interval(diff: float, se: float, dof: float, confidence: float) -> tuple[float, float]:
    """diff -+ t_{(1+c)/2, dof} se."""
    from scipy.stats import t

    half = float(t.ppf((1 + confidence) / 2, dof)) * se if se > 0 else 0.0
    return diff - half, diff + half


def fixed_tests(ev: Evidence, margin: float = DEFAULT_MARGIN) -> Tests | None:
    """The fixed-sample t tests of one comparison (None without a test)."""
    if ev.se is None:
        return None
    lo, hi = one_sided_p(ev.diff, ev.se, ev.dof)
    return Tests(ev.test, float(lo), float(hi), float(equivalence_p(ev.diff, ev.se, ev.dof, margin)),
                 t_interval(ev.diff, ev.se, ev.dof, 0.90), t_interval(ev.diff, ev.se, ev.dof, 0.95))


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (Holm 1979; None entries are not tests and stay None):
    sort the m p-values ascending, p_adj(i) = max over j <= i of min(1, (m - j + 1) p(j))."""
    idx = sorted((i for i, p in enumerate(pvalues) if p is not None), key=lambda i: pvalues[i])
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for j, i in enumerate(idx):  # j is zero-based: the factor is m - j
        running = max(running, min(1.0, (m - j) * pvalues[i]))
        out[i] = running
    return out


# --- power and planning ------------------------------------------------------------------------------

def _power_ncp(ncp: float, dof: float, level: float) -> float:
    from scipy.stats import nct, t

    c = float(t.ppf(1 - level / 2, dof))
    low = float(nct.sf(c, dof, -ncp))  # P(T' < -c) by symmetry: nct.cdf returns nan far in that tail
    return float(nct.sf(c, dof, ncp)) + (low if math.isfinite(low) else 0.0)


def _check(sd: float, n: int, level: float) -> None:
    if not sd > 0 or n < 2 or not 0 < level < 1:
        raise ValueError(f"needs sd > 0, n >= 2 and 0 < level < 1; got sd={sd}, n={n}, level={level}")


def power(effect: float, sd: float, n: int, level: float = ALPHA) -> float:
    """Power of the two-sided paired t-test with n pairs at ``level`` when the true mean difference
    is ``effect`` and one difference has SD ``sd``: P(|T'| > t_{1 - level/2, n-1}), T' noncentral t
    with n - 1 dof and noncentrality effect sqrt(n) / sd."""
    _check(sd, n, level)
    return _power_ncp(abs(effect) * math.sqrt(n) / sd, n - 1, level)


def _ncp_for(dof: float, level: float, target: float) -> float:
    from scipy.optimize import brentq

    hi = 1.0
    while _power_ncp(hi, dof, level) < target:
        hi *= 2
    return float(brentq(lambda x: _power_ncp(x, dof, level) - target, 0.0, hi, xtol=1e-10))


def detectable_difference(sd: float, n: int, level: float = ALPHA, target: float = POWER) -> float:
    """The smallest |mean difference| the two-sided paired t-test with n pairs detects with
    probability ``target`` at ``level`` (the root of ``power`` in the effect)."""
    _check(sd, n, level)
    return _ncp_for(n - 1, level, target) * sd / math.sqrt(n)


_NODES = np.polynomial.legendre.leggauss(64)  # converged to 1e-14 on the tests' grid


def tost_power(effect: float, sd: float, n: int, margin: float, level: float = ALPHA) -> float:
    """Exact power of the paired two one-sided tests (each at ``level``) to show |mean| < margin
    when the true mean difference is ``effect``. With s the sample SD, the test passes iff
    |mean| < margin - t_{1-level, n-1} s / sqrt(n); given s that has normal probability, integrated
    over (n-1) s^2 / sd^2 ~ chi^2_{n-1} (Gauss-Legendre over the chi_{n-1} SD ratio)."""
    _check(sd, n, level)
    if margin <= 0:
        return 0.0
    from scipy.special import gammaincinv, gammainccinv, gammaln, ndtr
    from scipy.stats import t

    k = n - 1
    c = float(t.ppf(1 - level, k)) / math.sqrt(k)  # the cut in units of sd / sqrt(n), per unit of chi
    a, b = (margin - effect) * math.sqrt(n) / sd, (margin + effect) * math.sqrt(n) / sd
    lo = math.sqrt(2 * gammaincinv(k / 2, 1e-15))  # the chi_k mass outside [lo, hi] is < 1e-15 a side
    hi = min((a + b) / (2 * c), math.sqrt(2 * gammainccinv(k / 2, 1e-15)))  # past (a + b) / 2c: empty
    if hi <= lo:
        return 0.0
    x, w = _NODES
    r = lo + (x + 1) / 2 * (hi - lo)
    pdf = np.exp((k - 1) * np.log(r) - r * r / 2 - (k / 2 - 1) * math.log(2) - gammaln(k / 2))
    inner = np.clip(ndtr(a - c * r) - ndtr(-b + c * r), 0.0, 1.0)
    return float(np.sum(w * inner * pdf) * (hi - lo) / 2)


def _smallest_n(ok, cap: int) -> int | None:
    """The smallest n in [2, cap] with ok(n) (ok monotone in n), or None."""
    if ok(2):
        return 2
    lo, hi = 2, 4
    while not ok(hi):
        if hi >= cap:
            return None
        lo, hi = hi, min(2 * hi, cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def seeds_to_decide(effect: float, sd: float, level: float = ALPHA, target: float = POWER,
                    cap: int = MAX_SEEDS) -> int | None:
    """The fewest pairs n >= 2 at which the two-sided paired t-test at ``level`` has power >= target
    for a true difference ``effect``; None for effect 0 or beyond ``cap``."""
    if effect == 0:
        return None
    return _smallest_n(lambda n: power(effect, sd, n, level) >= target, cap)


def seeds_to_show_equivalence(effect: float, sd: float, margin: float, level: float = ALPHA,
                              target: float = POWER, cap: int = MAX_SEEDS) -> int | None:
    """The fewest pairs n >= 2 at which TOST at ``level`` shows equivalence within +-margin with
    probability >= target when the true difference is ``effect``; None when |effect| >= margin (it
    cannot be shown) or beyond ``cap``."""
    if abs(effect) >= margin:
        return None
    return _smallest_n(lambda n: tost_power(effect, sd, n, margin, level) >= target, cap)


# --- verdicts ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """One comparison's verdict. ``text`` reads it in one line."""

    kind: str  # BETTER, WORSE, EQUIVALENT or UNDECIDED
    diff: float  # mean difference, group - baseline, nats
    n: int  # pairs (paired) or the smaller arm's seeds
    test: str | None  # the test the p-values come from; None: no test
    ci90: tuple[float, float] | None  # the interval the equivalence test reads (1 - 2 alpha at alpha = 0.05)
    ci95: tuple[float, float] | None
    p: float | None  # two-sided p of "no difference"
    p_holm: float | None  # Holm-adjusted over the family
    p_equiv: float | None  # TOST p of "not within +-margin"
    p_equiv_holm: float | None  # Holm-adjusted over the family
    margin: float
    alpha: float
    level: float  # the planning level, alpha / m (m: comparisons in the family)
    mde: float | None  # undecided: smallest difference the current seeds detect at 80% power
    seeds_to_decide: int | None  # undecided: seeds that decide the observed difference at 80% power
    seeds_to_show_equivalence: int | None  # undecided: seeds that show equivalence at 80% power
    noise_sd: float | None  # SD of one per-seed difference the planning used
    noise_source: str | None
    text: str

    @property
    def within_margin(self) -> bool:
        """Shown equivalent within +-margin (also set on a better / worse row whose difference is
        significant but smaller than the margin)."""
        return self.p_equiv_holm is not None and self.p_equiv_holm < self.alpha


def _seeds(n: int | None, what: str) -> str:
    return f"more than {MAX_SEEDS:,} seeds would {what}" if n is None else f"{n} seeds would {what}"


def _plan(ev: Evidence, noise: Noise | None, margin: float, level: float, plan: bool):
    """(mde, seeds_to_decide, seeds_to_show_equivalence, noise, clauses) of an undecided comparison."""
    own = ev.sd is not None and ev.sd > 0
    if own:
        noise = Noise(ev.sd, int(ev.dof) if ev.paired else None,
                      f"its own {ev.n} seeds" if ev.paired else "its two arms' seeds")
    elif noise is None or not noise.sd > 0:  # a noise of zero (copies of one run) plans nothing: the prior
        noise = PRIOR_NOISE
    if not plan:
        return None, None, None, noise, []
    if ev.se is not None and ev.se > 0:
        mde = _ncp_for(ev.dof, level, POWER) * ev.se
        clauses = [f"{ev.n} seeds could detect {mde:.3f} nats"]
    else:
        mde = None
        clauses = [f"{ev.n} seed{'s' * (ev.n > 1)} test{'s' * (ev.n < 2)} nothing; with SD {noise.sd:.3f} "
                   f"({noise.source})"]
    decide = seeds_to_decide(ev.diff, noise.sd, level)
    clauses.append("no difference observed to decide" if ev.diff == 0 else _seeds(decide, f"decide {ev.diff:+.3f}"))
    equiv = seeds_to_show_equivalence(ev.diff, noise.sd, margin, level)
    clauses.append(f"equivalence within ±{margin:.3f} cannot be shown (|{ev.diff:+.3f}| >= {margin:.3f})"
                   if abs(ev.diff) >= margin else _seeds(equiv, f"show equivalence within ±{margin:.3f}"))
    return mde, decide, equiv, noise, clauses


def _fmt_ci(ci: tuple[float, float]) -> str:
    return f"{ci[0]:+.3f} to {ci[1]:+.3f}"


def verdicts(evidence: Sequence[Evidence | None], *, alpha: float = ALPHA, margin: float = DEFAULT_MARGIN,
             noise: Noise | Sequence[Noise | None] | None = None, tests: Sequence[Tests | None] | None = None,
             plan: bool = True) -> list[Verdict | None]:
    """The verdict of every comparison of one family (a matrix), Holm-adjusted over it: better /
    worse at p_holm < alpha, else equivalent at p_equiv_holm < alpha, else undecided with what would
    decide it (``plan=False`` skips those figures: a round of ``sequential.review`` needs none).
    ``noise``: one per comparison (or one for all) for those without an SD of their own; default
    ``PRIOR_NOISE``. ``tests``: the p-values to read (default ``fixed_tests``; a sequential design
    passes its own). None in, None out."""
    if not 0 < alpha < 1 or not margin > 0:
        raise ValueError(f"needs 0 < alpha < 1 and margin > 0; got alpha={alpha}, margin={margin}")
    noises = list(noise) if isinstance(noise, Sequence) else [noise] * len(evidence)
    if tests is None:
        tests = [None if ev is None else fixed_tests(ev, margin) for ev in evidence]
    if not len(noises) == len(tests) == len(evidence):
        raise ValueError("evidence, noise and tests must be one per comparison")
    m = sum(ev is not None for ev in evidence)
    level = alpha / max(m, 1)
    p_holm = holm([None if t is None else t.p for t in tests])
    eq_holm = holm([None if t is None else t.p_equiv for t in tests])
    out: list[Verdict | None] = []
    for ev, t, ph, qh, nz in zip(evidence, tests, p_holm, eq_holm, noises):
        if ev is None:
            out.append(None)
            continue
        mde = decide = equiv = None
        if t is not None and ph < alpha:
            kind = BETTER if t.p_better <= t.p_worse else WORSE
            text = f"{kind}: {ev.diff:+.3f} nats (95% CI {_fmt_ci(t.ci95)}), p_holm {ph:.2g}"
            if qh < alpha:
                text += f", within ±{margin:.3f}"
            nz = None
        elif t is not None and qh < alpha:
            kind = EQUIVALENT
            text = f"equivalent within ±{margin:.3f}: {ev.diff:+.3f} nats (90% CI {_fmt_ci(t.ci90)})"
            nz = None
        else:
            kind = UNDECIDED
            mde, decide, equiv, nz, clauses = _plan(ev, nz, margin, level, plan)
            text = f"undecided: {ev.diff:+.3f} nats"
            if clauses:
                text += ("; " + "; ".join(clauses) + f" (80% power at {alpha:g}" +
                         (f"/{m})" if m > 1 else ")"))
        out.append(Verdict(kind, ev.diff, ev.n, None if t is None else t.name,
                           None if t is None else t.ci90, None if t is None else t.ci95,
                           None if t is None else t.p, ph, None if t is None else t.p_equiv, qh,
                           margin, alpha, level, mde, decide, equiv,
                           None if nz is None else nz.sd, None if nz is None else nz.source, text))
    return out


LEGEND = ("Verdict: better / worse when the two-sided t-test of the mean per-seed difference (group - baseline) "
          "has Holm-adjusted p < alpha over the matrix; equivalent when two one-sided tests show the difference "
          "within ±margin (the 90% interval inside ±margin for one comparison; Holm-adjusted over the matrix); "
          "undecided otherwise, with the smallest difference the current seeds could detect and the seeds that "
          "would decide the observed difference or show equivalence, at 80% power and level alpha/m (m "
          "comparisons), from the comparison's own seed noise or the estimate it names.")
