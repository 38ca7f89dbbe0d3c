"""A ladder's records as scaling laws: one fit of final validation loss against non-embedding parameters
per (activation, scheme) group (bench/results/laws.py), its predictions at a target size, and every
pair's crossover, as table rows the terminal, Markdown and the report share. Alongside, each group's
law in training compute C = 6 N D (D the tokens the cell trained on): with a tokens-per-parameter rule
D is proportional to N, so C ~ N^2 and alpha_C is about alpha_N / 2; with equal-compute rungs only
L(C) would be informative."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from .laws import CONFIDENCE, MAX_EXTRAPOLATION, Crossover, LawFit, crossover, fit_law
from .curves import tokens_per_step
from .records import Record
from .summary import final_val_loss


@dataclass
class LadderView:
    fits: list[LawFit]
    crossovers: list[Crossover]
    skipped: list[str]  # groups that could not be fitted, with why
    predict: float | None
    compute_fits: list[LawFit] = field(default_factory=list)  # the same groups in C = 6 N D


def training_compute(record: Record) -> float | None:
    """C = 6 N D: N non-embedding parameters, D the tokens trained on (None when either is unknown)."""
    n = record.params.non_embedding if record.params else None
    m = record.metrics
    d = m.tokens or ((tokens_per_step(record) or 0) * (m.steps or 0))
    return 6.0 * n * d if n and d else None


def ladder_points(records: list[Record], x: str = "N") -> dict[str, tuple[list[float], list[float]]]:
    """'activation:norm' -> (x, final loss) of every ok record (one per rung and seed); x = "N"
    (non-embedding parameters) or "C" (training compute 6 N D)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in records:
        loss = final_val_loss(r)
        if loss is None or r.params is None or not r.params.non_embedding:
            continue
        value = float(r.params.non_embedding) if x == "N" else training_compute(r)
        if value is None:
            continue
        xs, ys = out.setdefault(f"{r.activation}:{r.norm}", ([], []))
        xs.append(value)
        ys.append(loss)
    return out


def ladder_view(records: list[Record], predict: float | None = None, confidence: float = CONFIDENCE) -> LadderView:
    fits, skipped = [], []
    for group, (xs, ys) in ladder_points(records).items():
        try:
            fits.append(fit_law(xs, ys, group, "N", confidence))
        except ValueError as e:
            skipped.append(str(e))
    hi = max([max(f.rungs) for f in fits] + [predict or 0]) * (1 if predict else MAX_EXTRAPOLATION)
    crossings = [crossover(a, b, (min(min(a.rungs), min(b.rungs)), hi)) for a, b in combinations(fits, 2)]
    compute = []
    for group, (xs, ys) in ladder_points(records, "C").items():
        try:
            compute.append(fit_law(xs, ys, group, "C", confidence))
        except ValueError:
            pass  # said once already for N
    return LadderView(fits, crossings, skipped, predict, compute)


def _iv(iv) -> str:
    return f"[{iv[0]:.3g}, {iv[1]:.3g}]" if iv else "-"


FIT_HEADER = ("group", "x", "form", "rungs", "points", "alpha", "alpha CI", "E (nats)", "E CI", "A", "A CI", "note")


def fit_rows(view: LadderView, compute: bool = False) -> list[list[str]]:
    """One row per group's law in N (or, ``compute``, in C)."""
    rows = []
    for f in (view.compute_fits if compute else view.fits):
        rows.append([f.group, f.x_name, f.form, str(len(f.rungs)), str(f.n_points), f"{f.alpha:.3f}",
                     _iv(f.intervals.get("alpha")), f"{f.E:.3f}" if f.form.startswith("L = E") else "-",
                     _iv(f.intervals.get("E")), f"{f.A:.3g}", _iv(f.intervals.get("A")), f.note or ""])
    return rows


PREDICT_HEADER = ("group", "N", "predicted loss", "mean CI", "new-seed interval", "x largest rung", "note")


def predict_rows(view: LadderView) -> list[list[str]]:
    if not view.predict:
        return []
    rows = []
    for f in view.fits:
        p = f.predict(view.predict)
        note = f"extrapolated {p.factor:,.0f}x past the largest rung (over the {MAX_EXTRAPOLATION:.0f}x this " \
               "harness vouches for)" if p.beyond_limit else ("extrapolated" if p.factor > 1 else "")
        rows.append([f.group, f"{p.x:.3g}", f"{p.loss:.3f}", _iv(p.mean_interval), _iv(p.interval),
                     f"{p.factor:.3g}", note])
    return rows


CROSS_HEADER = ("groups", "crossover N", "interval", "lower beyond", "replicates crossing", "range", "note")


def _cross_note(c: Crossover) -> str:
    return f"cross {c.crossings} times: {c.below_at_end} lower at {c.x_range[1]:.3g}" if c.crossings > 1 else ""


def crossover_rows(view: LadderView) -> list[list[str]]:
    return [[f"{c.a} / {c.b}", f"{c.x:.3g}" if c.x else "no crossover in range", _iv(c.interval),
             c.below or "-", f"{c.share:.0%}", f"{c.x_range[0]:.3g}..{c.x_range[1]:.3g}", _cross_note(c)]
            for c in view.crossovers]


LEGEND = (f"Fits of final validation loss against non-embedding parameters N per group: L = E + A N^-alpha by "
          f"least squares (the pure power law with fewer than 4 rungs); {CONFIDENCE:.0%} percentile intervals from "
          f"a residual bootstrap over seeds (docs/scaling-laws.md); predictions past the largest rung are "
          f"extrapolations, flagged beyond {MAX_EXTRAPOLATION:.0f}x. The same fit against training compute "
          f"C = 6 N D (D = tokens trained on) follows; with a tokens-per-parameter ladder C grows as N^2, so "
          f"alpha_C is about half alpha_N.")
COMPUTE_TITLE = "In training compute: L(C) = E + A C^-alpha, C = 6 N D"


def to_markdown(view: LadderView) -> str:
    def table(header, rows):
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
            ["| " + " | ".join(r) + " |" for r in rows]

    lines = ["## Scaling laws", "", *table(FIT_HEADER, fit_rows(view)), ""]
    if view.predict:
        lines += [f"### Predicted at N = {view.predict:.3g}", "", *table(PREDICT_HEADER, predict_rows(view)), ""]
    if view.crossovers:
        lines += ["### Crossovers", "", *table(CROSS_HEADER, crossover_rows(view)), ""]
    if view.compute_fits:
        lines += [f"### {COMPUTE_TITLE}", "", *table(FIT_HEADER, fit_rows(view, compute=True)), ""]
    lines += [LEGEND] + [f"not fitted: {s}" for s in view.skipped]
    return "\n".join(lines) + "\n"


def render_rich(view: LadderView, console) -> None:
    from rich.table import Table

    for title, header, rows in (("scaling laws", FIT_HEADER, fit_rows(view)),
                                (f"predicted at N = {view.predict:.3g}" if view.predict else "", PREDICT_HEADER,
                                 predict_rows(view)),
                                ("crossovers", CROSS_HEADER, crossover_rows(view)),
                                (COMPUTE_TITLE, FIT_HEADER, fit_rows(view, compute=True))):
        if not rows:
            continue
        t = Table(title=title, title_justify="left")
        for col in header:
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    console.print(LEGEND, highlight=False)
    for s in view.skipped:
        console.print(f"[yellow]not fitted:[/] {s}", highlight=False)
