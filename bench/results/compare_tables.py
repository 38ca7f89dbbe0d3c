"""The comparison tables as plain rows (header + cell texts), rendered by the leaderboard (markdown,
rich) and the report (HTML): the paired statistics, the three views and where their rankings
disagree, and the learning-rate robustness table."""

from __future__ import annotations

import math

from .lr import GRID_COLUMNS, LR_COLUMNS, LR_LEGEND, UNIFORM, grid_rows, lr_curves, lr_notes, lr_rows
from .paired import LEGEND as PAIRED_LEGEND
from .paired import Paired, compare
from ..errors import ConfigError
from .views import (AXES, AXIS_TITLES, View, budget_text, check_budget, disagreements, reached_note, three_views,
                    view)

PAIRED_COLUMNS = ("scale", "activation", "norm", "n", "delta_loss", "ci95", "seed_sd", "effect", "test", "p",
                  "p_holm", "result")


def _f(v, spec: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return format(v, spec)


def paired_table(records, baseline=None) -> list[list[str]]:
    """One row per group: the paired (or Welch) comparison with its scale's baseline."""
    rows = []
    for (scale, row, norm), c in compare(records, baseline).items():
        rows.append(paired_cells(scale, row, norm, c))
    return rows


def paired_cells(scale: str, row: str, norm: str, c: Paired) -> list[str]:
    if c.is_baseline:
        return [scale, row, norm, str(c.n), "-", "-", _f(c.seed_sd, ".4f"), "-", "baseline", "-", "-", "baseline"]
    n = f"{c.n} pairs" if c.test is not None and c.test.name == "paired t" else f"{c.n} vs {c.n_baseline}"
    ci = "-" if c.ci is None else f"[{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]"
    effect = "-" if c.effect is None else f"{c.effect_name}={c.effect:+.2f}"
    test = "-" if c.test is None else f"{c.test.name} (t={_f(c.test.t, '.3g')}, dof={c.test.dof:.3g})"
    result = c.verdict + (f" {c.mark}" if c.mark else "") + (" (n<3)" if c.few_seeds else "")
    return [scale, row, norm, n + (" !" if c.few_seeds else ""), _f(c.diff, "+.4f"), ci, _f(c.seed_sd, ".4f"),
            effect, test, _f(c.test.p if c.test else None, ".3g"), _f(c.p_holm, ".3g"), result]


def few_seed_warning(records, baseline=None) -> str | None:
    """A warning line when any claimed ranking rests on fewer than 3 seeds."""
    few = [f"{k[1]} / {k[2]} ({k[0]})" for k, c in compare(records, baseline).items() if c.few_seeds]
    if not few:
        return None
    return (f"Warning: {len(few)} comparison(s) rest on fewer than 3 seeds ({', '.join(few[:6])}"
            f"{', ...' if len(few) > 6 else ''}): treat their ranking as unconfirmed; add seeds (--seed 0,1,2).")


VIEW_COLUMNS = ("scale", "budget", "rank", "activation", "norm", "val_loss", "val_ppl", "seeds", "rank_at_steps")


def view_table(v: View, steps_view: View | None = None) -> list[list[str]]:
    """The ranking of one view, with each group's rank at equal steps beside it."""
    base = {(g.scale, g.group): g.rank for g in (steps_view.groups if steps_view else [])}
    rows = []
    for g in sorted(v.groups, key=lambda g: (list(v.budgets).index(g.scale) if g.scale in v.budgets else 99,
                                             g.rank if g.rank is not None else math.inf)):
        b = v.budgets.get(g.scale)
        loss = g.loss
        rows.append([g.scale, budget_text(v.axis, b) + (" (estimated s)" if g.estimated else "") if b else "-",
                     str(g.rank) if g.rank else "-", g.group[0], g.group[1], _f(loss, ".4f"),
                     _f(math.exp(loss) if loss is not None else None, ".3f"),
                     f"{g.n}/{g.n_total}" if g.n_total else "no curve",
                     str(base.get((g.scale, g.group)) or "-")])
    return rows


RANK_COLUMNS = ("scale", "activation", "norm", "rank_steps", "rank_flops", "rank_seconds", "changes")


def rank_table(views: dict[str, View]) -> tuple[list[list[str]], list[str]]:
    """(rows: each group's rank per view, notes: per scale, each view's budget, winner and Kendall's tau)."""
    rows, notes = [], []
    for d in disagreements(views):
        for g, r in d.ranks.items():
            dropped = d.dropped.get(g)
            rows.append([d.scale, g[0], g[1], *(str(r[a]) if r.get(a) else "-" for a in AXES),
                         "yes" if g in d.changed else (f"not reached at {', '.join(dropped)}" if dropped else "")])
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
    return rows, notes


VIEWS_LEGEND = ("Each view reads every cell's validation loss at one matched budget: equal steps (optimizer steps), "
                "equal compute (training FLOPs = steps x grad_accum x the counted FLOPs per micro-batch) and equal "
                "time (training seconds on the device the cell ran on, validation excluded). Between validation "
                "points the loss is interpolated linearly in log(budget); nothing is extrapolated. The default budget "
                "of a scale is the largest every cell reached. A cell read before its end is mid-schedule (its LR "
                "has not annealed): the views say which run was ahead at the budget, not which would win a run "
                "tuned to it. Ranks: 1 = lowest loss, mean over seeds.")


def views_for(records, curves: dict, at: tuple[str, float | None] | None = None) -> dict[str, View]:
    """The three views (``at`` = (axis, budget) overrides that axis's default budget)."""
    budgets = {at[0]: at[1]} if at else {}
    return three_views(records, curves, budgets)


def check_at(records, curves: dict | None, at) -> None:
    """A budget no cell reaches is a ConfigError, raised before any table is printed."""
    try:
        check_budget(records, curves or {}, at)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def lr_table(records) -> tuple[list[list[str]], list]:
    """Rows of the LR robustness table and the curves (empty when no group has 2 or more LRs)."""
    curves = lr_curves(records)
    rows = []
    for r in lr_rows(curves):
        l0 = _f(r["l0"], ".4f") + (" (ln V)" if r["l0_basis"] == UNIFORM else "")
        rows.append([r["scale"], r["activation"], r["norm"], str(r["lrs"]), _f(r["best_lr"], ".3g"),
                     _f(r["best_loss"], ".4f"), _f(r["frontier_lr"], ".3g"), _f(r["sensitivity"], ".4f"), l0,
                     r["diverged_at"], r["failed_at"], r["note"] or "-"])
    return rows, curves


def grid_table(curves) -> list[list[str]]:
    """Rows of the sweep's grid: every (group, LR) point, a failed one marked with its reason."""
    return [[r["scale"], r["activation"], r["norm"], _f(r["lr"], ".3g"), str(r["seeds"]), _f(r["loss"], ".4f"),
             r["trains"], r["status"]] for r in grid_rows(curves)]


def markdown_table(header, rows) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|---" * len(header) + "|",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]


def markdown_sections(records, curves: dict | None, baseline=None,
                      at: tuple[str, float | None] | None = None) -> list[str]:
    """The paired statistics, the views (all three ranked, or the one ``at`` names) and the LR table, as markdown."""
    lines = []
    rows = paired_table(records, baseline)
    if any(r[-1] != "baseline" for r in rows):
        lines += ["## Paired statistics against the baseline (final validation loss)", "",
                  *markdown_table(PAIRED_COLUMNS, rows), "", PAIRED_LEGEND, ""]
        if (w := few_seed_warning(records, baseline)):
            lines += [w, ""]
    if curves:
        views = views_for(records, curves, at)
        if at:
            v = views[at[0]]
            lines += [f"## Ranking at {AXIS_TITLES[at[0]]}", "",
                      *markdown_table(VIEW_COLUMNS, view_table(v, views["steps"])), ""]
            lines += [n, ""] if (n := reached_note(v)) else []
        rows, notes = rank_table(views)
        lines += ["## Rankings at equal steps, equal compute and equal time", "",
                  *markdown_table(RANK_COLUMNS, rows), "", *notes, "", VIEWS_LEGEND, ""]
    rows, lr_curves_ = lr_table(records)
    if rows:
        lines += ["## Learning-rate robustness", "", *markdown_table(LR_COLUMNS, rows), "", LR_LEGEND, "",
                  *(w for n in lr_notes(lr_curves_) for w in (n, "")),
                  "### Every grid point", "", *markdown_table(GRID_COLUMNS, grid_table(lr_curves_)), ""]
    return lines


def render_rich(records, curves: dict | None, console, title: str, baseline=None,
                at: tuple[str, float | None] | None = None) -> None:
    """The same sections as rich tables."""
    from rich.table import Table

    def show(name, header, rows, notes=()):
        t = Table(title=f"{title}: {name}", title_justify="left")
        for h in header:
            t.add_column(h, justify="left" if h in ("scale", "activation", "norm", "test", "result", "budget",
                                                    "diverged_at", "failed_at", "note", "changes", "trains", "status")
                     else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)
        for n in notes:
            console.print(n, highlight=False, markup=False)

    rows = paired_table(records, baseline)
    if any(r[-1] != "baseline" for r in rows):
        show("paired statistics against the baseline", PAIRED_COLUMNS, rows,
             [PAIRED_LEGEND] + ([w] if (w := few_seed_warning(records, baseline)) else []))
    if curves:
        views = views_for(records, curves, at)
        if at:
            show(f"ranking at {AXIS_TITLES[at[0]]}", VIEW_COLUMNS, view_table(views[at[0]], views["steps"]),
                 [n] if (n := reached_note(views[at[0]])) else [])
        rows, notes = rank_table(views)
        show("rankings at equal steps / compute / time", RANK_COLUMNS, rows, notes)
    rows, lr_curves_ = lr_table(records)
    if rows:
        show("learning-rate robustness", LR_COLUMNS, rows, [LR_LEGEND, *lr_notes(lr_curves_)])
        show("learning-rate grid", GRID_COLUMNS, grid_table(lr_curves_))


__all__ = ["PAIRED_COLUMNS", "VIEW_COLUMNS", "RANK_COLUMNS", "paired_table", "view_table", "rank_table", "lr_table",
           "grid_table", "few_seed_warning", "views_for",
           "markdown_sections", "render_rich", "markdown_table", "VIEWS_LEGEND",
           "view", "check_at"]
