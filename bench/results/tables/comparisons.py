"""The tables that set groups side by side, each built from the typed rows of its statistic: the paired
statistics against each scale's baseline (stats.paired.Paired), the rankings at equal steps, compute
and time (stats.views), learning-rate robustness (stats.lr) and scaling laws (stats.laws)."""

from __future__ import annotations

import math

import numpy as np

from ..stats.laws import CONFIDENCE, MAX_EXTRAPOLATION, Crossover, LawFit, Laws
from ..stats.lr import UNIFORM, LRCurve
from ..stats.paired import Paired
from ..stats.verdicts import LEGEND, WELCH
from ..stats.views import AXES, AXIS_TITLES, Disagreement, View, budget_text, disagreements, reached_note
from .. import render
from . import Column, Table, Warn, fmt


def _left(name: str, get=None, **kw) -> Column:
    return Column(name, get=get, align="left", **kw)


# ---- paired statistics against the baseline ------------------------------------------------------

PAIRED_TITLE = "Paired statistics against the baseline (final validation loss)"
PAIRED_LEGEND = (
    "Paired statistics: per-seed differences of final validation loss (group - baseline, same seed = same data "
    "order) tested with the paired t-test (effect size Cohen's d_z) when the two groups share >= 2 seeds, otherwise "
    "Welch's statistic with min(n_a, n_b) - 1 dof (Hsu; effect size Hedges' g); a run trained until decided is read "
    "with its sequential design's tests (sequential paired t); ci95: the test's 95% interval of the mean difference; "
    "p_holm: Holm-adjusted over every test of the matrix; * / † better / worse at p_holm < 0.05; seed sd: the SD of "
    "the baseline's final loss over its seeds at that scale (a single-seed difference has sqrt(2) times that SD); "
    "'n<3' warns that the comparison rests on fewer than 3 seeds. " + LEGEND)


def seeds_text(c: Paired, a_first: bool = False) -> str:
    """'k pairs' (paired on k shared seeds), else 'n_group vs n_baseline' ('n_baseline vs n_group' with
    ``a_first``, as `bench compare` lists A before B)."""
    if c.test is not None and c.test.name != WELCH:
        return f"{c.n} pairs"
    return f"{c.n_baseline} vs {c.n}" if a_first else f"{c.n} vs {c.n_baseline}"


def test_text(c: Paired) -> str | None:
    if c.is_baseline:
        return "baseline"
    t = c.test
    return None if t is None else f"{t.name} (t={fmt(t.t, '.3g')}, dof={fmt(t.dof, '.3g')})"


def result_text(c: Paired) -> str:
    """'baseline', 'better *', 'worse †', 'equivalent', 'undecided' or why there was no verdict; '(n<3)' on
    fewer than 3 seeds."""
    if c.is_baseline:
        return "baseline"
    return c.verdict + (f" {c.mark}" if c.mark else "") + (" (n<3)" if c.few_seeds else "")


def verdict_text(c: Paired) -> str | None:
    """The verdict in one line: what it rests on, or (undecided) what would decide it."""
    if c.is_baseline:
        return None
    if c.decision is None:
        return c.note or None
    return c.decision.text


def tone(c: Paired) -> str | None:
    return "base" if c.is_baseline else {"better": "better", "worse": "worse"}.get(c.verdict)


def _not_base(get):
    return lambda c: None if c.is_baseline else get(c)


VERDICT_COLUMN = _left("verdict", verdict_text)
PAIRED_COLUMNS = (
    _left("scale", lambda c: c.scale),
    _left("activation", lambda c: c.group[0]),
    _left("norm", lambda c: c.group[1]),
    _left("n", lambda c: str(c.n) if c.is_baseline else seeds_text(c) + (" !" if c.few_seeds else "")),
    Column("delta_loss", get=_not_base(lambda c: c.diff), fmt="+.4f"),
    _left("ci95", _not_base(lambda c: c.ci), fmt="+.4f"),
    Column("seed_sd", get=lambda c: c.seed_sd, fmt=".4f"),
    _left("effect", _not_base(lambda c: None if c.effect is None else f"{c.effect_name}={fmt(c.effect, '+.2f')}")),
    _left("test", test_text),
    Column("p", get=lambda c: c.test.p if c.test else None, fmt=".3g"),
    Column("p_holm", get=lambda c: c.p_holm, fmt=".3g"),
    _left("result", result_text, tone=tone),
    VERDICT_COLUMN,
)


def few_seed_warning(comparisons: list[Paired]) -> Warn | None:
    """A warning when any claimed ranking rests on fewer than 3 seeds."""
    few = [f"{c.group[0]} / {c.group[1]} ({c.scale})" for c in comparisons if c.few_seeds]
    if not few:
        return None
    return Warn(f"Warning: {len(few)} comparison(s) rest on fewer than 3 seeds ({', '.join(few[:6])}"
                f"{', ...' if len(few) > 6 else ''}): treat their ranking as unconfirmed; add seeds (--seed 0,1,2), "
                "or let --until-decided add them where they decide something.")


def paired_table(comparisons: list[Paired], notes=()) -> Table | None:
    """One row per group against its scale's baseline (None when nothing but baselines)."""
    if all(c.is_baseline for c in comparisons):
        return None
    return Table(PAIRED_TITLE, PAIRED_COLUMNS, comparisons, PAIRED_LEGEND, (few_seed_warning(comparisons), *notes))


SEEDS_TITLE = "Seeds until decided, against a fixed design of equal power"
SEEDS_LEGEND = ("A run trained until decided adds a seed to a comparison (the group and its baseline) only while it "
                "is undecided, at most max_seeds. pairs: the seeds it used; at the observed difference and SD, taken "
                "as the truth (with few seeds only an order of magnitude): power, the chance the design decides the "
                "difference's sign; mean seeds, what it uses on average (simulated, 20,000 draws, level alpha/m); "
                "fixed design: the seeds a one-look paired t-test needs for the same power (noncentral t).")


def seeds_rows(comparisons: list[Paired], rec) -> list[tuple[Paired, object]]:
    """(comparison, sequential.savings at its observed difference and SD) of every judged comparison
    with an SD of its own (the family's level alpha / m)."""
    from ..stats.sequential import savings

    judged = [c for c in comparisons if c.decision is not None]
    level = rec.alpha / max(1, len(judged))
    rows = []
    for c in judged:
        d = c.differences[: rec.design.max_seeds]
        sd = float(np.std(d, ddof=1)) if len(d) >= 2 else 0.0
        rows.append((c, savings(rec.design, c.diff, sd, level=level, margin=rec.margin)
                     if sd > 0 and c.diff is not None else None))
    return rows


SEEDS_COLUMNS = (
    _left("scale", lambda x: x[0].scale), _left("activation", lambda x: x[0].group[0]),
    _left("norm", lambda x: x[0].group[1]), Column("pairs", get=lambda x: len(x[0].shared)),
    _left("verdict", lambda x: x[0].verdict),
    Column("power", get=lambda x: x[1].power if x[1] else None, fmt=".0%"),
    Column("mean_seeds", get=lambda x: x[1].expected_seeds if x[1] else None, fmt=".1f"),
    Column("fixed_design", get=lambda x: (x[1].fixed_seeds if x[1].fixed_seeds is not None else "none decides")
           if x[1] else None),
)


def seeds_table(comparisons: list[Paired], rec) -> Table | None:
    """The seeds a run trained until decided used, against a fixed design of equal power (None: nothing
    judged)."""
    rows = seeds_rows(comparisons, rec)
    if not rows:
        return None
    k = rec.design.max_seeds
    used = sum(len(c.shared[:k]) for c, _ in rows)
    match = [(c, s) for c, s in rows if s is not None and s.fixed_seeds is not None]
    note = f"Used {used} pairs over {len(rows)} comparison(s)"
    if match:
        fixed, mine = sum(s.fixed_seeds for _, s in match), sum(len(c.shared[:k]) for c, _ in match)
        note += (f"; for the {len(match)} a fixed design of equal power can match, it needs {fixed} pairs where "
                 f"these used {mine}")
    note += "."
    return Table(SEEDS_TITLE, SEEDS_COLUMNS, rows, SEEDS_LEGEND, (note,))


TUNED_TITLE = "Verdicts at the shared and at the tuned learning rates"
TUNED_LEGEND = ("Each comparison judged twice: on the run at the recipe's shared LR, and on fresh seeds at each "
                "group's best LR from the same tuning budget (--tune lr). 'depends on LR': both decided, "
                "differently.")
DECIDED = ("better", "worse", "equivalent")


def _lrs(c: Paired | None, records_lr) -> str | None:
    if c is None:
        return None
    return f"{fmt(records_lr(c.ids))} vs {fmt(records_lr(c.base_ids))}"


def tuned_table(shared: dict, tuned: dict, lr_of, budget: str) -> Table | None:
    """One row per comparison of either run (``compare`` results keyed alike): its verdict at the
    shared LR and at the tuned LRs, marked where they disagree; ``lr_of(ids)``: the LR those cells
    trained at."""
    keys = [k for k in dict.fromkeys([*shared, *tuned])
            if not (shared.get(k) or tuned.get(k)).is_baseline]
    if not keys:
        return None
    rows = [(k, shared.get(k), tuned.get(k)) for k in keys]

    def depends(row) -> str:
        a, b = row[1], row[2]
        if a is None or b is None or a.verdict not in DECIDED or b.verdict not in DECIDED:
            return ""
        return "depends on LR" if a.verdict != b.verdict else "agree"

    cols = (_left("scale", lambda r: r[0][0]), _left("activation", lambda r: r[0][1]), _left("norm", lambda r: r[0][2]),
            _left("shared_lr", lambda r: None if r[1] is None else r[1].verdict),
            _left("tuned_lr", lambda r: None if r[2] is None else r[2].verdict),
            _left("tuned_lrs", lambda r: _lrs(r[2], lr_of), header="tuned LR (group vs baseline)"),
            _left("lr", depends))
    return Table(TUNED_TITLE, cols, rows, TUNED_LEGEND + f" Tuning budget: {budget}.")


LR_LAW_TITLE = "Learning rate along the ladder: a power law in N through the tuned rungs"
LR_LAW_LEGEND = ("--tune lr on a ladder tunes the smallest rungs only (the same LR grid and tuning seeds for every "
                 "group), fits lr*(N) = A N^-alpha through each group's best LRs (the scaling-law fitter; with 4 or "
                 "more tuned rungs E + A N^-alpha) and trains every rung at the law's LR, on fresh seeds. Beyond the "
                 "tuned rungs the LR is an extrapolation of the law.")


def _pairs(pts) -> str:
    return ", ".join(f"{fmt(n, ',.0f')}: {lr:.3g}" for n, lr in pts)


def _law_text(law) -> str | None:
    if law is None:
        return None
    e = f"{law.E:.3g} + " if law.E else ""
    return f"lr*(N) = {e}{law.A:.3g} N^-{law.alpha:.3g}"


def lr_law_table(laws: list, sizes: list[float]) -> Table | None:
    """One row per ladder group (``tuning.LRLaw``): its tuned points, the law, and the LR it gives
    every rung."""
    if not laws:
        return None
    cols = (_left("group", lambda x: x.group), _left("tuned", lambda x: _pairs(x.tuned), header="best LR at N"),
            _left("law", lambda x: _law_text(x.law) or x.note),
            _left("rungs", lambda x: _pairs((n, x.lr(n)) for n in sizes) if x.law else None,
                  header="LR at every rung"),
            _left("note", lambda x: x.note or None))
    return Table(LR_LAW_TITLE, cols, laws, LR_LAW_LEGEND)


# ---- equal steps, equal compute, equal time ------------------------------------------------------

VIEWS_TITLE = "Rankings at equal steps, equal compute and equal time"
VIEWS_LEGEND = ("Each view reads every cell's validation loss at one matched budget: equal steps (optimizer steps), "
                "equal compute (training FLOPs = steps x grad_accum x the counted FLOPs per micro-batch) and equal "
                "time (training seconds on the device the cell ran on, validation excluded). Between validation "
                "points the loss is interpolated linearly in log(budget); nothing is extrapolated. The default budget "
                "of a scale is the largest every cell reached. A cell read before its end is mid-schedule (its LR "
                "has not annealed): the views say which run was ahead at the budget, not which would win a run "
                "tuned to it. Ranks: 1 = lowest loss, mean over seeds.")


def view_table(v: View, steps_view: View | None = None, notes=()) -> Table:
    """The ranking of one view, with each group's rank at equal steps beside it."""
    steps_rank = {(g.scale, g.group): g.rank for g in (steps_view.groups if steps_view else [])}
    order = list(v.budgets)

    def budget(g):
        b = v.budgets.get(g.scale)
        return budget_text(v.axis, b) + (" (estimated s)" if g.estimated else "") if b else None

    rows = sorted(v.groups, key=lambda g: (order.index(g.scale) if g.scale in order else 99,
                                           g.rank if g.rank is not None else math.inf))
    columns = (_left("scale"), _left("budget", budget), Column("rank"), _left("activation", lambda g: g.group[0]),
               _left("norm", lambda g: g.group[1]), Column("val_loss", get=lambda g: g.loss, fmt=".4f"),
               Column("val_ppl", get=lambda g: None if g.loss is None else math.exp(g.loss), fmt=".3f"),
               Column("seeds", get=lambda g: f"{g.n}/{g.n_total}" if g.n_total else "no curve"),
               Column("rank_at_steps", get=lambda g: steps_rank.get((g.scale, g.group))))
    return Table(f"Ranking at {AXIS_TITLES[v.axis]}", columns, rows, notes=(reached_note(v), *notes))


def rank_table(views: dict[str, View], found: list[Disagreement] | None = None) -> Table:
    """Each group's rank in every view, and per scale each view's budget, winner and Kendall's tau
    (``found``: ``disagreements(views)``, when the caller has them already)."""
    rows, notes = [], []
    for d in (disagreements(views) if found is None else found):
        for g, r in d.ranks.items():
            dropped = d.dropped.get(g)
            rows.append((d.scale, g, r, "yes" if g in d.changed else (
                f"not reached at {', '.join(dropped)}" if dropped else "")))
        budgets = "; ".join(f"{AXIS_TITLES[a]} at {budget_text(a, views[a].budgets[d.scale])}"
                            for a in AXES if d.scale in views[a].budgets)
        winners = {a: w for a, w in d.winners.items() if w}
        same = len({w for w in winners.values()}) <= 1
        taus = ", ".join(f"{a} vs {b}: {t:+.2f}" for (a, b), t in d.tau.items() if t is not None)
        notes.append(f"{d.scale}: {budgets}. " + (
            "All views agree on the winner" if same else "The winner changes: " + ", ".join(
                f"{AXIS_TITLES[a]}: {w[0]} / {w[1]}" for a, w in winners.items())) +
            (f"; {len(d.changed)} group(s) change rank" if d.changed else "; no group changes rank") +
            (f"; Kendall's tau {taus}." if taus else "."))
    columns = (_left("scale", lambda x: x[0]), _left("activation", lambda x: x[1][0]),
               _left("norm", lambda x: x[1][1]),
               *(Column(f"rank_{a}", get=lambda x, a=a: x[2].get(a) or None) for a in AXES),
               _left("changes", lambda x: x[3], tone=lambda x: "worse" if x[3] else None))
    return Table(VIEWS_TITLE, columns, rows, VIEWS_LEGEND, notes)


# ---- learning-rate robustness --------------------------------------------------------------------

LR_TITLE = "Learning-rate robustness"
GRID_TITLE = "Every grid point"
LR_LEGEND = ("best_lr / best_loss: the grid LR with the lowest mean final validation loss over seeds; frontier_lr: "
             "the largest LR whose every seed trained (finished, final loss below l_0); l0: the loss at init, the "
             "validation loss each cell measured before its first step (mean over the group), ln V where records "
             "lack it; sensitivity: Wortsman et al. 2023's LR sensitivity, the mean over the grid of "
             "[min(loss(lr), l_0) - l*] with l* the best loss on the grid and diverged runs counted at l_0 "
             "(0 = flat; larger = more sensitive); failed_at: grid points none of whose seeds trained to an "
             "outcome (failed, oom, interrupted), left out of both.")


def _lr_note(c: LRCurve) -> str | None:
    notes = ["a smaller LR failed to train (non-monotone)"] if c.non_monotone else []
    if c.l0_basis == UNIFORM:
        notes.append("l_0 = ln V: no measured loss at init in these records")
    return "; ".join(notes) or None


def _best(c: LRCurve, attr: str):
    b = c.best
    return getattr(b, attr) if b else None


LR_COLUMNS = (
    _left("scale"), _left("activation", lambda c: c.group[0]), _left("norm", lambda c: c.group[1]),
    Column("lrs", get=lambda c: len(c.points)),
    Column("best_lr", get=lambda c: _best(c, "lr"), fmt=".3g"),
    Column("best_loss", get=lambda c: _best(c, "value"), fmt=".4f"),
    Column("frontier_lr", get=lambda c: c.frontier, fmt=".3g"),
    Column("sensitivity", fmt=".4f"),
    Column("l0", get=lambda c: fmt(c.l0, ".4f") + (" (ln V)" if c.l0_basis == UNIFORM else "")),
    _left("diverged_at", lambda c: ", ".join(fmt(v, ".3g") for v in c.diverged) or None),
    _left("failed_at", lambda c: ", ".join(fmt(p.lr, ".3g") for p in c.failed) or None),
    _left("note", _lr_note),
)


GRID_COLUMNS = (
    _left("scale", lambda x: x[0].scale), _left("activation", lambda x: x[0].group[0]),
    _left("norm", lambda x: x[0].group[1]), Column("lr", get=lambda x: x[1].lr, fmt=".3g"),
    Column("seeds", get=lambda x: len(x[1].statuses)), Column("loss", get=lambda x: x[1].value, fmt=".4f"),
    _left("trains", lambda x: "yes" if x[1].trains else "no"), _left("status", lambda x: x[1].status_text()),
)


def lr_notes(curves: list[LRCurve]) -> list[Warn]:
    """Under the table: the basis of l_0 when any curve fell back to ln V, and the failed grid points."""
    lines = []
    fallback = [f"{c.group[0]} / {c.group[1]} ({c.scale})" for c in curves if c.l0_basis == UNIFORM]
    if fallback:
        lines.append(Warn(f"l_0 is ln V for {len(fallback)} group(s) ({', '.join(fallback[:6])}"
                          f"{', ...' if len(fallback) > 6 else ''}): their records carry no measured loss at init "
                          "(trained before it was recorded, or with --train.init_val false); the measured one is "
                          "higher, so their frontier and sensitivity are approximate."))
    failed = [(c, p) for c in curves for p in c.failed]
    if failed:
        lines.append(Warn(f"Failed: {len(failed)} grid point(s) with no seed that trained to an outcome ("
                          + "; ".join(f"{c.group[0]} / {c.group[1]} at lr {fmt(p.lr, '.3g')}: {p.status_text()}"
                                      for c, p in failed[:4]) + ("; ..." if len(failed) > 4 else "")
                          + "): left out of the best LR and the sensitivity; a rerun retries them."))
    return lines


def lr_tables(curves: list[LRCurve]) -> tuple[Table, Table] | None:
    """(the robustness table, every grid point) of the groups swept over 2 or more LRs (None: no sweep)."""
    if not curves:
        return None
    return (Table(LR_TITLE, LR_COLUMNS, curves, LR_LEGEND, lr_notes(curves)),
            Table(GRID_TITLE, GRID_COLUMNS, [(c, p) for c in curves for p in c.points]))


# ---- scaling laws --------------------------------------------------------------------------------

LAWS_TITLE = "Scaling laws"
COMPUTE_TITLE = "In training compute: L(C) = E + A C^-alpha, C = 6 N D"
LAWS_LEGEND = (f"Fits of final validation loss against non-embedding parameters N per group: L = E + A N^-alpha by "
               f"least squares (the pure power law with fewer than 4 rungs); {CONFIDENCE:.0%} percentile intervals "
               f"from a residual bootstrap over seeds (docs/scaling-laws.md); predictions past the largest rung are "
               f"extrapolations, flagged beyond {MAX_EXTRAPOLATION:.0f}x. The same fit against training compute "
               f"C = 6 N D (D = tokens trained on) follows; with a tokens-per-parameter ladder C grows as N^2, so "
               f"alpha_C is about half alpha_N.")
IV = ".3g"  # intervals and sizes


def _full(f: LawFit) -> bool:
    return f.form.startswith("L = E")


FIT_COLUMNS = (
    _left("group"), _left("x", lambda f: f.x_name), _left("form"), Column("rungs", get=lambda f: len(f.rungs)),
    Column("points", get=lambda f: f.n_points), Column("alpha", fmt=".3f"),
    Column("alpha CI", get=lambda f: f.intervals.get("alpha"), fmt=IV),
    Column("E (nats)", get=lambda f: f.E if _full(f) else None, fmt=".3f"),
    Column("E CI", get=lambda f: f.intervals.get("E"), fmt=IV), Column("A", fmt=IV),
    Column("A CI", get=lambda f: f.intervals.get("A"), fmt=IV), _left("note", lambda f: f.note or ""),
)


def _predict_note(p) -> str:
    if p.beyond_limit:
        return (f"extrapolated {fmt(p.factor, ',.0f')}x past the largest rung (over the "
                f"{fmt(MAX_EXTRAPOLATION, '.0f')}x this harness vouches for)")
    return "extrapolated" if p.factor > 1 else ""


PREDICT_COLUMNS = (
    _left("group", lambda x: x[0].group), Column("N", get=lambda x: x[1].x, fmt=IV),
    Column("predicted loss", get=lambda x: x[1].loss, fmt=".3f"),
    Column("mean CI", get=lambda x: x[1].mean_interval, fmt=IV),
    Column("new-seed interval", get=lambda x: x[1].interval, fmt=IV),
    Column("x largest rung", get=lambda x: x[1].factor, fmt=IV), _left("note", lambda x: _predict_note(x[1])),
)


def _cross_note(c: Crossover) -> str:
    return f"cross {c.crossings} times: {c.below_at_end} lower at {fmt(c.x_range[1], IV)}" if c.crossings > 1 else ""


CROSS_COLUMNS = (
    _left("groups", lambda c: f"{c.a} / {c.b}"),
    Column("crossover N", get=lambda c: c.x if c.x else "no crossover in range", fmt=IV),
    Column("interval", get=lambda c: c.interval, fmt=IV), _left("lower beyond", lambda c: c.below),
    Column("replicates crossing", get=lambda c: c.share, fmt=".0%"),
    Column("range", get=lambda c: f"{fmt(c.x_range[0], IV)}..{fmt(c.x_range[1], IV)}"), _left("note", _cross_note),
)


def law_tables(laws: Laws) -> list[Table]:
    """The laws in N (legend and the groups not fitted under it), predictions at ``laws.predict``, the
    crossovers, the laws in C; only those with rows."""
    out = [Table(LAWS_TITLE, FIT_COLUMNS, laws.fits, LAWS_LEGEND,
                 [Warn(f"not fitted: {s}") for s in laws.skipped])]
    if laws.predict:
        out.append(Table(f"Predicted at N = {fmt(laws.predict, IV)}", PREDICT_COLUMNS,
                         [(f, f.predict(laws.predict)) for f in laws.fits]))
    if laws.crossovers:
        out.append(Table("Crossovers", CROSS_COLUMNS, laws.crossovers))
    if laws.compute_fits:
        out.append(Table(COMPUTE_TITLE, FIT_COLUMNS, laws.compute_fits))
    return out


def laws_markdown(tables: list[Table]) -> str:
    """The laws' tables as Markdown: the laws in N under '## Scaling laws', the others under '###'."""
    return "".join(render.markdown(t, 2 if i == 0 else 3) for i, t in enumerate(tables)).rstrip("\n") + "\n"


def print_laws(tables: list[Table], console, name: str) -> None:
    """The laws' tables in the terminal, titled with the matrix's ``name``."""
    for t in tables:
        render.rich(console, t, render.titled(name, t.title))
