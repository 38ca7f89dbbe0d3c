"""Comparisons against a baseline that hold up: every group against its scale's baseline judged by
the verdicts of stats/verdicts.py (better / worse / equivalent within a margin / undecided with what
would decide it), Holm-corrected across the matrix, with effect sizes and the seed noise of each scale.

Decisions (docs/statistics.md has the formulas, docs/verdicts.md the verdicts):

- One computation. The test, its p, the Holm-adjusted p, the interval, the marks (* / †) and the
  verdict are all read off ``verdicts.evidence`` and ``verdicts.verdicts`` (or, for a sequential
  run, ``sequential.review``): never two tests that could disagree.
- Pairing. The same seed gives the same data order (and the same initialization stream), so a
  group and its scale's baseline are compared on per-seed differences d_s = L_group(s) - L_base(s)
  of final validation loss, over the seeds where both finished ok: with >= 2 such pairs the paired
  t-test; with fewer and >= 2 seeds per group Welch's statistic with min(n_a, n_b) - 1 dof (Hsu:
  Welch-Satterthwaite's dof is anti-conservative at 2 to 5 seeds); with one seed no test, and the
  verdict says what would decide it.
- Noise for planning. A comparison without an SD of its own (one seed) plans with the noise of the
  other comparisons of its scale (``verdicts.pooled_noise``), else the documented prior; the
  verdict names the source.
- A sequential run (``sequential.Design``: seeds added in rounds until decided) is read with the
  design's sequential tests on the shared seeds in seed order: the one-look p-values are invalid
  after stopping early.
- Few seeds. A comparison resting on fewer than 3 seeds (pairs, or the smaller group) carries a
  warning.
- Seed noise. Per scale, the sample SD of the baseline group's final losses over its seeds: the
  spread a rerun with another seed shows; a single-seed difference has SD sqrt(2) times that.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..records import Record
from .groups import baseline_groups, final_val_loss, group_records, learned, parse_baseline
from .sequential import SEQUENTIAL, Design, review
from .verdicts import ALPHA, DEFAULT_MARGIN, WELCH, Verdict, evidence, pooled_noise, verdicts

MIN_SEEDS = 3
NOT_LEARNED = "not learned"


@dataclass(frozen=True)
class Test:
    """The test a verdict was read from: its name, t statistic, degrees of freedom and two-sided p."""

    name: str  # PAIRED, WELCH or sequential.SEQUENTIAL
    t: float
    dof: float
    p: float


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
    """One group against its scale's baseline; ``decision`` is its verdict (``judge``)."""

    scale: str
    group: tuple[str, str]
    baseline: tuple[str, str]
    n: int  # pairs (paired) or seeds of the group (unpaired)
    n_baseline: int
    diff: float | None  # mean difference of final validation loss (group - baseline)
    test: Test | None
    effect: float | None  # Cohen's d_z (paired) or Hedges' g (unpaired)
    seed_sd: float | None  # the scale's seed noise
    p_holm: float | None = None
    alpha: float = ALPHA
    note: str = ""
    decision: Verdict | None = None
    losses: dict = field(default_factory=dict, repr=False)  # seed -> the group's final loss
    base_losses: dict = field(default_factory=dict, repr=False)  # seed -> the baseline's
    ids: tuple[str, ...] = ()  # the group's record ids
    base_ids: tuple[str, ...] = ()

    @property
    def is_baseline(self) -> bool:
        return self.group == self.baseline

    @property
    def effect_name(self) -> str:
        return "" if self.test is None else ("g" if self.test.name == WELCH else "d_z")

    @property
    def few_seeds(self) -> bool:
        return not self.is_baseline and min(self.n, self.n_baseline) < MIN_SEEDS

    @property
    def ci(self) -> tuple[float, float] | None:
        """The verdict's 95% interval of the mean difference (t, or the sequential design's)."""
        return None if self.decision is None else self.decision.ci95

    @property
    def paired(self) -> bool:
        return len(self.shared) >= 2

    @property
    def shared(self) -> list[int]:
        """The seeds both arms finished ok, ascending (the order a sequential run added them)."""
        return sorted(set(self.losses) & set(self.base_losses))

    @property
    def differences(self) -> list[float]:
        return [self.losses[s] - self.base_losses[s] for s in self.shared]

    @property
    def verdict(self) -> str:
        """'baseline', the verdict's kind (better, worse, equivalent, undecided), or why there is none."""
        if self.is_baseline:
            return "baseline"
        if self.decision is None:
            return self.note or "no test"
        return self.decision.kind

    @property
    def mark(self) -> str:
        return {"better": "*", "worse": "†"}.get(self.verdict, "")


def _losses_by_seed(recs) -> dict[int, float]:
    return {r.seed: v for r in recs if (v := final_val_loss(r)) is not None}


def versus(scale: str, group: tuple[str, str], base: tuple[str, str], recs: list[Record], base_recs: list[Record],
           seed_sd: float | None = None, alpha: float = ALPHA) -> Paired:
    """``recs`` (seed repeats of ``group``) against ``base_recs``, not yet judged (``judge`` judges a
    family of them). Not judged at all when either has not learned (``groups.learned``)."""
    mine, theirs = _losses_by_seed(recs), _losses_by_seed(base_recs)
    diff = statistics.fmean(mine.values()) - statistics.fmean(theirs.values()) if mine and theirs else None
    shared = sorted(set(mine) & set(theirs))
    if len(shared) >= 2:
        diff = statistics.fmean(mine[s] - theirs[s] for s in shared)
        n, nb = len(shared), len(shared)
    else:
        n, nb = len(mine), len(theirs)
    note = NOT_LEARNED if learned(recs) is False or learned(base_recs) is False else ""
    if group == base:
        diff, note = None, ""
    elif not note and not (mine and theirs):
        note = f"no test (n={n} vs {nb}: no ok seed on one side)"
    return Paired(scale, group, base, n, nb, diff, None, None, seed_sd, alpha=alpha, note=note, losses=mine,
                  base_losses=theirs, ids=tuple(r.id for r in recs), base_ids=tuple(r.id for r in base_recs))


def _judged(c: Paired) -> bool:
    return not c.is_baseline and c.note != NOT_LEARNED and bool(c.losses) and bool(c.base_losses)


def _noise(c: Paired, family: list[Paired]):
    """The noise a comparison without an SD of its own plans with: the other comparisons of its scale."""
    others = [o for o in family if o.scale == c.scale and o is not c]
    groups = {}
    for o in [c, *others]:
        groups[o.group], groups[o.baseline] = list(o.losses.values()), list(o.base_losses.values())
    return pooled_noise(differences=[o.differences for o in others if o.paired], groups=groups.values(),
                        where=f" at {c.scale}")


def _test(c: Paired, v: Verdict, sequential: bool) -> Test | None:
    if v.test is None:
        return None
    if sequential:
        d = np.asarray(c.differences[: v.n], float)
        sd = float(np.std(d, ddof=1))
        se = sd / math.sqrt(d.size)
        t = d.mean() / se if se > 0 else (math.copysign(math.inf, d.mean()) if d.mean() else 0.0)
        return Test(SEQUENTIAL, float(t), d.size - 1, v.p)
    ev = evidence(c.losses, c.base_losses)
    t = ev.diff / ev.se if ev.se else (math.copysign(math.inf, ev.diff) if ev.diff else 0.0)
    return Test(ev.test, float(t), float(ev.dof), v.p)


def judge(comparisons: Iterable[Paired], alpha: float = ALPHA, margin: float = DEFAULT_MARGIN,
          design: Design | None = None) -> None:
    """Sets ``decision``, ``test``, ``p_holm`` and ``effect`` on every comparison of one family (Holm
    across all of them): the fixed-sample verdicts, or ``design``'s sequential ones on the shared seeds
    (only the first ``design.max_seeds`` pairs are the design's looks). A comparison that has not
    learned, or without an ok seed on a side, is not judged."""
    family = [c for c in comparisons if _judged(c)]
    noise = [_noise(c, family) for c in family]
    if design is None:
        found = verdicts([evidence(c.losses, c.base_losses) for c in family], alpha=alpha, margin=margin,
                         noise=noise)
    else:
        paired = [c for c in family if c.shared]
        for c in family:
            if not c.shared:
                c.note = "no shared seed: a sequential run compares paired seeds only"
        keep = [i for i, c in enumerate(family) if c.shared]
        statuses = review([c.differences[: design.max_seeds] for c in paired], design, alpha=alpha, margin=margin,
                          noise=[noise[i] for i in keep])
        family, found = paired, [s.verdict for s in statuses]
    for c, v in zip(family, found):
        c.decision, c.p_holm = v, v.p_holm
        c.test = _test(c, v, design is not None)
        shared = c.shared[: design.max_seeds] if design else c.shared
        if len(shared) >= 2:
            c.effect = cohens_dz([c.losses[s] for s in shared], [c.base_losses[s] for s in shared])
        else:
            c.effect = hedges_g(list(c.losses.values()), list(c.base_losses.values()))
        if v.test is None:
            c.note = f"no test (n={c.n} vs {c.n_baseline}; needs >= 2 seeds per group)"


def compare(records: list[Record], baseline=None, alpha: float = ALPHA, margin: float = DEFAULT_MARGIN,
            design: Design | None = None) -> dict[tuple[str, str, str], Paired]:
    """(scale, row label, norm) -> Paired comparison with the scale's baseline group, judged (``judge``)
    over every comparison of the matrix together. ``baseline``: None (each scale's first row x first
    column), (act, norm) or 'ACT:NORM'; ``design``: the sequential design the records were trained
    under, if any."""
    baseline = parse_baseline(baseline) if isinstance(baseline, str) else baseline
    groups = group_records(records)
    bases = baseline_groups(records, baseline)
    noise = seed_noise(records, baseline)
    out = {}
    for (scale, row, norm), recs in groups.items():
        base = bases.get(scale)
        if base is None:
            continue
        out[(scale, row, norm)] = versus(scale, (row, norm), base, recs, groups.get((scale, *base), []),
                                         noise.get(scale), alpha)
    judge(out.values(), alpha, margin, design)
    return out
