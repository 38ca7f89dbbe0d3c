"""A matrix's records as its leaderboard, built once per command as ``Table``s and rendered in every format:
a PPL pivot per scale (mean ± 95% CI over seeds, marked against the scale's baseline group), the paired
statistics, the rankings at equal steps / compute / time (with validation curves), learning-rate
robustness (an LR sweep), every cell with its costs (and, given a target loss, the tokens and seconds to
reach it), and downstream accuracies (`bench eval`). The statistics behind them are computed here once:
the paired comparisons serve the pivots' marks, their legend and the paired table alike."""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ...errors import ConfigError
from .. import render
from ..curves import TimeToTarget, load_curves, time_to_target
from ..records import Record, write_text
from ..stats.costs import cost_noise, cost_note, eval_share, eval_share_warning, shared_machine
from ..stats.groups import (Summary, baseline_groups, cell_order, final_val_ppl, flat, group_records,
                            not_learned_note, parse_baseline, summarize, warmup_warning)
from ..stats.lr import LRCurve, lr_curves
from ..stats.paired import NOT_LEARNED, Paired, compare
from ..stats.verdicts import DEFAULT_MARGIN
from ..design import Recorded, read_design
from ..stats.views import AXES, Disagreement, check_budget, disagreements, parse_budget, three_views
from . import Column, Estimate, Table, Warn, fmt
from .comparisons import lr_tables, paired_table, rank_table, seeds_table, view_table

MARK_LEGEND = ("* / †: final validation loss significantly lower / higher than the baseline cell of the same scale "
               "(the verdict better / worse: paired t-test on per-seed differences, same seed = same data order; "
               "Welch's t-test with min(n_a, n_b) - 1 dof for groups without 2 shared seeds; two-sided, "
               "Holm-corrected across the matrix, p < 0.05); no mark: equivalent, undecided, or fewer than 2 seeds "
               "in a group (the paired table's verdict says which, and what would decide it). Cells: mean "
               "validation PPL ± 95% CI half-width (Student t, n-1 dof) (n seeds).")
PIVOT_TITLE = ": final validation PPL (mean ± 95% CI over seeds)"  # after the scale
CELLS_TITLE = "All cells by validation PPL"
DOWNSTREAM_TITLE = "Downstream accuracy (lm-evaluation-harness, zero-shot unless noted)"
TERMINAL_HIDDEN = ("id", "val_loss", "train_loss", "params_non_embedding")  # in the files, not on the terminal


# ---- arguments -----------------------------------------------------------------------------------

def resolve_baseline(baseline) -> tuple[str, str] | None:
    """None, (act, norm) or 'ACT:NORM' -> None or (act, norm); a malformed string is a ConfigError."""
    if baseline is None or isinstance(baseline, tuple):
        return baseline
    try:
        return parse_baseline(baseline)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def resolve_at(at) -> tuple[str, float | None] | None:
    """None, (axis, budget) or 'flops=1e12' -> None or (axis, budget); a malformed string is a ConfigError."""
    if at is None or isinstance(at, tuple):
        return at
    try:
        return parse_budget(at)
    except ValueError as e:
        raise ConfigError(str(e)) from None


# ---- the pivots ----------------------------------------------------------------------------------

class PivotCell(NamedTuple):
    """One (row, norm) of a pivot: the PPL over seeds (None: no ok seed) and its comparison with the baseline."""

    summary: Summary | None
    comparison: Paired | None


def pivot_text(cell: PivotCell) -> str:
    """'mean ± CI half-width (n=k)' plus '*' / '†' when significantly better / worse than the baseline,
    ' (base)' on the baseline cell; '-' for a group without an ok seed."""
    stat, comp = cell
    if stat is None:
        return "-"
    text = fmt(stat.mean, ".3f") + (f" ± {fmt(stat.half_width, '.3f')}" if stat.half_width is not None else "")
    text += f" (n={stat.n})"
    if comp is not None:
        text += " (base)" if comp.is_baseline else comp.mark
    return text


def pivot_tone(cell: PivotCell) -> str | None:
    comp = cell.comparison
    if comp is None:
        return None
    return "base" if comp.is_baseline else {"better": "better", "worse": "worse"}.get(comp.verdict)


def pivot_legend(scale: str, base: tuple[str, str] | None, comps: list[Paired]) -> str:
    """The test's legend for one scale's pivot, naming its baseline and when no test was possible."""
    if base is None:
        return f"{MARK_LEGEND} Scale {scale}: the baseline is not among its cells; no marks."
    text = f"{MARK_LEGEND} Baseline (base) at {scale}: {base[0]} x {base[1]}."
    comps = [c for c in comps if not c.is_baseline]
    untested = [c for c in comps if c.test is None]
    if comps and len(untested) == len(comps) and {c.note for c in untested} == {NOT_LEARNED}:
        text += " No marks: no group learned beyond token frequencies (see the note below)."
    elif comps and len(untested) == len(comps):
        text += " No significance test was possible here: fewer than 2 seeds in a group (n < 2)."
    elif untested:
        text += " Groups without a mark include some where no test was possible (n < 2)."
    return text


def pivot_tables(records: list[Record], comparisons: dict, baseline) -> list[Table]:
    """Per scale: rows (activation labels) x norms, each cell a ``PivotCell``."""
    try:
        bases = baseline_groups(records, baseline) if records else {}
    except ValueError as e:
        raise ConfigError(str(e)) from None
    cells = {}
    for (scale, row, norm), recs in group_records(records).items():
        ppls = [v for r in recs if (v := final_val_ppl(r)) is not None]
        cells[(scale, row, norm)] = summarize(ppls) if ppls else None
    def column(scale: str, norm: str) -> Column:
        def get(row: str) -> PivotCell:
            return PivotCell(cells.get((scale, row, norm)), comparisons.get((scale, row, norm)))
        return Column(norm, get=get, fmt=pivot_text, tone=lambda row: pivot_tone(get(row)))

    tables = []
    for scale, (rows, norms) in cell_order(records).items():
        columns = [Column("activation", align="left", get=lambda row: row), *(column(scale, n) for n in norms)]
        comps = [c for (s, *_), c in comparisons.items() if s == scale]
        tables.append(Table(f"{scale}{PIVOT_TITLE}", columns, rows,
                            pivot_legend(scale, bases.get(scale), comps)))
    return tables


# ---- every cell ----------------------------------------------------------------------------------

@dataclass
class CellRow:
    """One cell of the long table: its record, its rank (None: not finished ok), the spread of its
    group's tokens/s over seeds, and (given a target loss) when it reached the target (``ttt`` None:
    no curve; ``unreadable``: a metrics.csv is there but holds no validation curve)."""

    record: Record
    rank: int | None = None
    spread: float | None = None
    ttt: TimeToTarget | None = None
    unreadable: bool = False


def _metric(name: str):
    return lambda row: row.record.metrics.get(name)


def _left(name: str, get, header: str = "") -> Column:
    return Column(name, header, get, align="left")


def plugin_mark(record: Record) -> str | None:
    """'name@sha256[:8]' of each plugin part the cell used (record.plugins['parts']), None for built-ins."""
    parts = (record.plugins.get("parts") or {}).values()
    return ", ".join(f"{p['name']}@{str(p.get('sha256'))[:8]}" for p in parts) or None


CELL_COLUMNS = (
    Column("rank"),
    _left("id", lambda row: row.record.id),
    _left("scale", lambda row: row.record.scale),
    _left("activation", lambda row: row.record.activation),
    _left("norm", lambda row: row.record.norm),
    _left("precision", lambda row: row.record.precision or (row.record.config.get("train") or {}).get("precision")),
    Column("seed", get=lambda row: row.record.seed),
    _left("status", lambda row: row.record.status),
    Column("val_ppl", "val PPL", _metric("val_ppl"), ".3f"),
    Column("ood_ppl", "OOD PPL", _metric("ood_ppl"), ".3f"),
    Column("val_loss", "val loss (nats)", _metric("val_loss")),
    Column("train_loss", "train loss (nats)", _metric("train_loss")),
    Column("tokens_per_sec", "tokens/s", _metric("tokens_per_sec")),
    Column("tokens_per_sec_spread", "tokens/s spread (SD over seeds, %)", lambda row: row.spread, "pct"),
    _left("shared", lambda row: "yes" if shared_machine(row.record) else None, "shared machine"),
    Column("eval_share", "validation share of fit time (%)", lambda row: eval_share(row.record), "pct"),
    Column("mfu", "MFU (%)", _metric("mfu"), "pct"),
    Column("peak_memory_mb", "peak memory (MiB)",
           lambda row: (row.record.metrics.peak_memory_bytes or 0) / 2**20 or None),
    Column("params", "parameters", lambda row: row.record.params.total if row.record.params else None, ",.0f"),
    Column("params_non_embedding", "non-embedding parameters",
           lambda row: row.record.params.non_embedding if row.record.params else None, ",.0f"),
    Column("wall_seconds", "wall time (s)", lambda row: row.record.wall_seconds),
    _left("plugin", lambda row: plugin_mark(row.record)),
)
STANDARD_AXES = ("scale", "activation", "norm", "seed")


def axis_columns(records: list[Record]) -> list[Column]:
    """Every axis the matrix swept beyond scale / activation / norm / seed (record.axes), then every
    config field that differs between cells of one (scale, activation, norm) group (an override
    that splits a row), in first-seen order."""
    names = [k for r in records for k in r.axes if k not in STANDARD_AXES]
    by_cell: dict[tuple, list[Record]] = {}
    for r in records:
        by_cell.setdefault((r.scale, r.activation, r.norm), []).append(r)
    for recs in by_cell.values():
        flats = [flat(r.config) for r in recs]
        names += sorted(k for k in {k for f in flats for k in f}
                        if k != "seed" and len({repr(f.get(k)) for f in flats}) > 1)

    flats = {id(r): (r, flat(r.config)) for r in records}  # once per record, not once per value

    def value(row, name):
        v = row.record.axes.get(name)
        if v is not None:
            return v
        held, f = flats.get(id(row.record), (None, None))
        return (f if held is row.record else flat(row.record.config)).get(name)

    known = {c.name for c in CELL_COLUMNS}
    return [Column(n, get=lambda row, n=n: value(row, n)) for n in dict.fromkeys(names) if n not in known]


def domain_columns(records: list[Record]) -> list[Column]:
    """'<name>_ppl' of every data.eval domain beyond val/ood, in first-seen order."""
    names = [n for r in records for n in r.data.get("eval", []) if n not in ("val", "ood")]
    return [Column(f"{n}_ppl", get=_metric(f"{n}_ppl"), fmt=".3f") for n in dict.fromkeys(names)]


def _target(row: CellRow, value):
    """A time-to-target cell: the value, 'not reached', or for an ok cell without a curve 'no curve' or
    'curve unreadable' (a garbled metrics.csv is no reason to say the target was not reached)."""
    if row.ttt is None:
        if row.record.status != "ok":
            return None
        return "curve unreadable" if row.unreadable else "no curve"
    return value(row.ttt) if row.ttt.reached else "not reached"


TARGET_COLUMNS = (
    Column("tokens_to_target", "tokens to target", lambda row: _target(row, lambda t: t.tokens), ",.0f"),
    Column("seconds_to_target", "seconds to target (s)",
           lambda row: _target(row, lambda t: t.seconds if t.seconds is None or not t.seconds_estimated
                               else Estimate(t.seconds))),
)


def evaluation(record: Record) -> dict:
    """record['eval'] (written by `bench eval`, kept among the record's extra keys)."""
    ev = record.extra.get("eval")
    return ev if isinstance(ev, dict) else {}


def eval_tasks(records: list[Record]) -> list[str]:
    """Every task any record was evaluated on, in first-seen order."""
    return list(dict.fromkeys(t for r in records for t in evaluation(r)))


def accuracy(record: Record, task: str) -> float | None:
    """A task's accuracy (acc_norm when the task has no acc); None where not evaluated."""
    m = evaluation(record).get(task) or {}
    return m.get("acc", m.get("acc_norm"))


def cell_columns(records: list[Record], target: float | None = None) -> list[Column]:
    """The long table's columns: the fixed ones, every swept axis after the scale, every data.eval
    domain after ood_ppl, time to target (given one) and one '<task>:acc' per downstream task."""
    names = [c.name for c in CELL_COLUMNS]
    i, j = names.index("scale") + 1, names.index("ood_ppl") + 1
    return [*CELL_COLUMNS[:i], *axis_columns(records), *CELL_COLUMNS[i:j], *domain_columns(records),
            *CELL_COLUMNS[j:], *(TARGET_COLUMNS if target is not None else ()),
            *(Column(f"{t}:acc", get=lambda row, t=t: accuracy(row.record, t)) for t in eval_tasks(records))]


def unigram_reference(records: list[Record]) -> dict[str, float]:
    """The 'learned nothing' PPL per tokenizer fingerprint (one value per distinct validation text)."""
    refs = {}
    for r in records:
        d = r.data
        if d.get("unigram_ppl") is not None:
            tok = (r.config.get("data") or {}).get("tokenizer", "?")
            refs[f"{tok} ({str(d.get('tokenizer_fingerprint', ''))[:8]})"] = d["unigram_ppl"]
    return refs


def cell_notes(records: list[Record], target: float | None = None) -> list[str]:
    """Under the long table: plugins, the unigram reference PPL, the MFU and memory bases, how time to
    target is measured, and how noisy the cost figures are."""
    lines = []
    if any(plugin_mark(r) for r in records):
        lines.append("plugin: the cell uses parts registered by a plugin (name@source sha256); each record's "
                     "'plugins' lists the modules loaded, their versions and how they were loaded.")
    for name, ppl in unigram_reference(records).items():
        lines.append(f"Reference: unigram PPL of the validation text under tokenizer {name}: {fmt(ppl, '.3f')} "
                     "(what a model that learned nothing but token frequencies scores).")
    basis = {r.metrics.mfu_basis for r in records} - {None}
    mem = {r.metrics.peak_memory_basis for r in records} - {None}
    if basis:
        lines.append(f"MFU is against: {'; '.join(sorted(basis))}. Peak memory is {'; '.join(sorted(mem))}.")
    if target is not None:
        lines.append(f"Time to target: optimizer steps until the validation loss first is <= {target:g}, at the "
                     "validation interval's resolution; tokens = steps x batch_size x block_size x grad_accum; "
                     "seconds marked '~' are estimates (the cell's measured training seconds, validation excluded, "
                     "x step / steps: a constant step time is assumed).")
    if (note := cost_note(records)):
        lines.append(Warn(note))
    return lines


def cells_table(records: list[Record], target: float | None = None, curves: dict | None = None) -> Table:
    """One row per cell, sorted by validation PPL, finished cells ranked; failed cells last with their
    status. With a target loss: tokens and seconds to first reach it (from ``curves``: record id ->
    parsed metrics.csv)."""
    noise = cost_noise(records)
    rows = []
    for r in records:
        curve = (curves or {}).get(r.id)
        readable = bool(curve) and "val/loss" in curve  # a garbled metrics.csv reads, but not as a curve
        ttt = time_to_target(r, curve, target) if target is not None and readable else None
        unreadable = not readable and r.path is not None and (r.path.parent / "metrics.csv").exists()
        rows.append(CellRow(r, None, noise.get(r.id), ttt, unreadable))
    rows.sort(key=lambda x: (x.record.status != "ok", v if (v := x.record.metrics.val_ppl) is not None else math.inf))
    for i, row in enumerate(rows, 1):  # an unfinished cell (failed, interrupted, oom, diverged) has no rank
        row.rank = i if row.record.status == "ok" else None
    return Table(CELLS_TITLE, cell_columns(records, target), rows, notes=cell_notes(records, target))


def downstream_table(records: list[Record]) -> Table | None:
    """Each evaluated cell's accuracy per task (None when no cell was evaluated)."""
    tasks = eval_tasks(records)
    if not tasks:
        return None
    columns = (_left("cell", lambda r: r.id), _left("activation", lambda r: r.activation),
               _left("norm", lambda r: r.norm),
               _left("precision", lambda r: r.precision or (r.config.get("train") or {}).get("precision")),
               *(Column(f"{t}:acc", get=lambda r, t=t: accuracy(r, t), fmt=".4f") for t in tasks),
               Column("n", get=lambda r: ", ".join(str((evaluation(r).get(t) or {}).get("n", "-")) for t in tasks)))
    return Table(DOWNSTREAM_TITLE, columns, [r for r in records if evaluation(r)],
                 "lm-evaluation-harness on local task data (`bench eval`); the accuracy of a tiny model is near "
                 "chance (1 / number of choices); n = examples scored per task.")


# ---- the leaderboard -----------------------------------------------------------------------------

@dataclass
class Leaderboard:
    """Every table of one matrix's leaderboard, and the statistics they were built from (the report
    draws its figures from the same ones)."""

    title: str
    pivots: list[Table]
    cells: Table
    paired: Table | None = None
    seeds: Table | None = None  # a run trained until decided: the seeds it used against a fixed design
    ranks: Table | None = None
    views: dict[str, Table] = field(default_factory=dict)  # axis -> its ranking
    at: str | None = None  # the view --at names
    lr: Table | None = None
    grid: Table | None = None
    downstream: Table | None = None
    comparisons: dict[tuple[str, str, str], Paired] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)
    lr_curves: list[LRCurve] = field(default_factory=list)

    def parts(self) -> list[tuple[Table, int]]:
        """The tables in reading order, each with its heading level."""
        out = [(t, 2) for t in self.pivots]
        out += [(t, 2) for t in (self.paired, self.seeds, self.views.get(self.at) if self.at else None, self.ranks,
                                 self.lr) if t]
        out += [(self.grid, 3)] if self.grid else []
        out += [(t, 2) for t in (self.cells, self.downstream) if t]
        return out

    def terminal(self) -> list[Table]:
        """The tables the terminal shows: the same, the long table without the columns only a file needs."""
        hidden = TERMINAL_HIDDEN + (() if any(plugin_mark(r.record) for r in self.cells.rows) else ("plugin",))
        return [self.cells.without(*hidden) if t is self.cells else t for t, _ in self.parts()]

    def is_pivot(self, table: Table) -> bool:
        return any(table is p for p in self.pivots)


def _warnings(records: list[Record]) -> list[Warn]:
    """What may mislead a reader, one line each: groups that have not learned beyond token frequencies
    (with the likely cause), a warmup longer than a quarter of the run, validation dominating the fit."""
    return [Warn(w) for w in (not_learned_note(group_records(records)), warmup_warning(records),
                              eval_share_warning(records)) if w]


def check_margin(margin: float | None) -> None:
    if margin is not None and not (margin > 0 and math.isfinite(margin)):
        raise ConfigError(f"--margin takes a positive number of nats (e.g. {DEFAULT_MARGIN}), got {margin}")


def build_leaderboard(records: list[Record], title: str, baseline=None, target: float | None = None,
                      curves: dict | None = None, at=None, margin: float | None = None,
                      sequential: Recorded | None = None) -> Leaderboard:
    """The leaderboard of ``records`` (``baseline``: None, (act, norm) or 'ACT:NORM'; ``curves``: record id
    -> parsed metrics.csv, for the views and time to target; ``at``: 'flops=X' etc. adds the ranking at
    that budget; ``margin``: the verdicts' equivalence margin in nats, default the sequential design's
    or DEFAULT_MARGIN; ``sequential``: the design the records were trained under, whose tests the
    verdicts then use). A malformed baseline, margin, or a budget no cell reaches, is a ConfigError."""
    baseline, at = resolve_baseline(baseline), resolve_at(at)
    check_margin(margin)
    if margin is None:
        margin = sequential.margin if sequential else DEFAULT_MARGIN
    try:
        check_budget(records, curves or {}, at)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    design = sequential.design if sequential else None
    try:
        comparisons = compare(records, baseline, margin=margin, design=design) if records else {}
    except ValueError as e:  # a baseline no scale has, naming the valid ones
        raise ConfigError(str(e)) from None
    pivots = pivot_tables(records, comparisons, baseline)
    if pivots:  # what may mislead a reader of the pivots, under the last one
        pivots[-1] = dataclasses.replace(pivots[-1], notes=_warnings(records))
    notes = [sequential_note(sequential, margin, comparisons.values())] if sequential else []
    board = Leaderboard(title, pivots, cells_table(records, target, curves),
                        paired=paired_table(list(comparisons.values()), notes), downstream=downstream_table(records),
                        comparisons=comparisons, at=at[0] if at else None)
    if sequential:
        board.seeds = seeds_table(list(comparisons.values()), sequential)
    if curves:
        views = three_views(records, curves, {at[0]: at[1]} if at else {})
        cost = Warn(n) if (n := cost_note(records)) else None
        board.views = {a: view_table(views[a], views["steps"], (cost,) if a == "seconds" else ())
                       for a in AXES}
        board.disagreements = disagreements(views)
        board.ranks = rank_table(views, board.disagreements)
    board.lr_curves = lr_curves(records)
    if (lr := lr_tables(board.lr_curves)):
        board.lr, board.grid = lr
    return board


# ---- the leaderboard in each format --------------------------------------------------------------

def to_markdown(board: Leaderboard) -> str:
    return render.markdown_document(board.title, board.parts())


def to_csv(board: Leaderboard) -> str:
    """The long table: one row per cell."""
    return render.csv(board.cells)


def to_latex(board: Leaderboard) -> str:
    """One booktabs table per section, in the Markdown's order, captioned with the matrix's name."""
    out = f"% {board.title}: leaderboard\n{render.PREAMBLE}\n\n"
    for t, _ in board.parts():
        if board.is_pivot(t):
            scale = t.title.removesuffix(PIVOT_TITLE)
            out += render.latex(t, f"{board.title}, {t.title}", render.slug(f"{board.title}-{scale}-ppl"))
        else:
            out += render.latex(t, render.titled(board.title, t.title))
    return out.rstrip("\n") + "\n"


def print_rich(board: Leaderboard, console) -> None:
    for t in board.terminal():
        render.rich(console, t, render.titled(board.title, t.title, ", " if board.is_pivot(t) else ": "))


def previous_ids(path: Path) -> set[str]:
    """The cell ids of an existing leaderboard.csv (empty if none or unreadable)."""
    try:
        with open(path, newline="") as f:
            return {row["id"] for row in csv.DictReader(f) if row.get("id")}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return set()


def write_leaderboard(folder: Path, board: Leaderboard, console=None) -> list[Path]:
    """leaderboard.md and leaderboard.csv in ``folder``. Never replaces a leaderboard listing cells the new
    one lacks (a record damaged or deleted since): the new tables go beside it as leaderboard.new.{md,csv},
    with a message."""
    md, cv = Path(folder) / "leaderboard.md", Path(folder) / "leaderboard.csv"
    lost = previous_ids(cv) - {row.record.id for row in board.cells.rows}
    if lost:
        from rich.console import Console

        md, cv = md.with_name("leaderboard.new.md"), cv.with_name("leaderboard.new.csv")
        msg = (f"{Path(folder) / 'leaderboard.csv'} lists {len(lost)} cell(s) with no usable record now "
               f"({', '.join(sorted(lost))}): kept it, wrote {md.name} and {cv.name} beside it")
        (console or Console(stderr=True)).print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)
    write_text(md, to_markdown(board))
    write_text(cv, to_csv(board))
    return [md, cv]


def folder_leaderboard(folder: Path, records: list[Record], title: str, baseline=None,
                       target: float | None = None, at=None, margin: float | None = None) -> Leaderboard:
    """The leaderboard of records from ``folder``, its validation curves read there (views, time to target)
    and its sequential design, if it was trained until decided."""
    return build_leaderboard(records, title, baseline, target, load_curves(folder), at, margin, read_design(folder))


def sequential_note(rec: Recorded, margin: float, comparisons) -> str:
    """Under the paired table of a run trained until decided: how its verdicts were read."""
    k = rec.design.max_seeds
    over = [c for c in comparisons if not c.is_baseline and len(c.shared) > k]
    text = (f"Trained until decided (sequential design: at most {k} seeds, {rec.design.spending} spending, alpha "
            f"{rec.alpha:g}, stopping margin ±{rec.margin:g}): the verdicts are the design's sequential tests on the "
            "shared seeds in seed order (docs/verdicts.md); the one-look t-tests would be invalid after stopping "
            "early.")
    if margin != rec.margin:
        text += f" The table's margin ±{margin:g} is not the one the rounds stopped on."
    if over:
        text += (f" {len(over)} comparison(s) have more than {k} pairs: only the first {k} are the design's looks; "
                 "the rest are not counted.")
    return text
