"""Records -> leaderboard tables: a PPL pivot per scale (mean ± 95% CI over seeds, with a
significance mark against a baseline cell), a table of the significance tests, and a long table
with the costs (and, given a target loss, the tokens and seconds to reach it)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from .downstream import eval_columns, eval_markdown, eval_tasks
from .records import Record, write_text
from . import compare_tables
from .columns import COST_COLUMNS, axis_columns, axis_value, cost_cells, cost_note, header
from .curves import load_curves, time_to_target
from .grouping import baseline_groups, cell_order, group_records, parse_baseline, row_labels
from .learned import not_learned_note, warmup_warning
from .validation_cost import eval_share_warning
from .paired import NEEDS_TEST, NOT_LEARNED, PAIRED, Paired, compare
from .sci import NEEDS_SCIPY, have_scipy
from .summary import Summary, final_val_ppl, summarize
from .views import parse_budget

MARK_LEGEND = ("* / †: final validation loss significantly lower / higher than the baseline cell of the same scale "
               "(paired t-test on per-seed differences, same seed = same data order; Welch's t-test for groups "
               "without 2 shared seeds; two-sided, Holm-corrected across the matrix, p < 0.05); no mark: not "
               "significant, or fewer than 2 seeds in a group (no test possible). Cells: mean validation PPL ± "
               "95% CI half-width (Student t, n-1 dof) (n seeds).")

__all__ = ["LONG_COLUMNS", "plugin_mark", "long_columns", "long_rows", "row_labels", "pivots", "pivot_cell", "legend",
           "comparison_rows", "COMPARISON_COLUMNS", "fmt_cell", "fmt_value", "fmt_comparison", "FORMATS",
           "unigram_reference", "notes", "to_markdown", "to_csv", "render_rich", "write_tables", "resolve_baseline"]

LONG_COLUMNS = ("rank", "id", "scale", "activation", "norm", "precision", "seed", "status", "val_ppl", "ood_ppl",
                "val_loss",
                "train_loss", "tokens_per_sec", "mfu", "peak_memory_mb", "params", "params_non_embedding",
                "wall_seconds", "plugin")
TARGET_COLUMNS = ("tokens_to_target", "seconds_to_target")


def domain_columns(records: list[Record] | None) -> tuple[str, ...]:
    """'<name>_ppl' of every data.eval domain beyond val/ood, in first-seen order."""
    names = [n for r in (records or []) for n in r.data.get("eval", []) if n not in ("val", "ood")]
    return tuple(f"{n}_ppl" for n in dict.fromkeys(names))


def long_columns(target: float | None = None, records: list[Record] | None = None) -> tuple[str, ...]:
    """The long table's columns; with records, one '<name>_ppl' per data.eval domain (after ood_ppl) and
    one '<task>:acc' per downstream task (at the end)."""
    i, j = LONG_COLUMNS.index("ood_ppl") + 1, LONG_COLUMNS.index("tokens_per_sec") + 1
    evals = tuple(f"{t}:acc" for t in eval_tasks(records or []))
    axes = tuple(c for c in axis_columns(records or []) if c not in LONG_COLUMNS)
    return (LONG_COLUMNS[:3] + axes + LONG_COLUMNS[3:i] + domain_columns(records) + LONG_COLUMNS[i:j] + COST_COLUMNS
            + LONG_COLUMNS[j:] + (TARGET_COLUMNS if target is not None else ()) + evals)


def resolve_baseline(baseline) -> tuple[str, str] | None:
    """None, (act, norm) or 'ACT:NORM' -> None or (act, norm); a malformed string is a ConfigError."""
    if baseline is None or isinstance(baseline, tuple):
        return baseline
    try:
        return parse_baseline(baseline)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def long_rows(records: list[Record], target: float | None = None, curves: dict | None = None) -> list[Record]:
    """One row per cell, sorted by validation PPL; failed cells last with their status. With a
    target loss: tokens and seconds to first reach it (from ``curves``: record id -> parsed
    metrics.csv), None when not reached, 'target_reached' None when there is no curve."""
    rows = []
    tasks, axes, costs = eval_tasks(records), axis_columns(records), cost_cells(records)
    for r in records:
        m = r.metrics
        row = {
            "id": r.id, "scale": r.scale, "activation": r.activation, "norm": r.norm, "seed": r.seed,
            "status": r.status, "val_ppl": m.val_ppl, "ood_ppl": m.ood_ppl,
            "val_loss": m.val_loss, "train_loss": m.train_loss,
            "tokens_per_sec": m.tokens_per_sec, "mfu": m.mfu,
            "peak_memory_mb": m.peak_memory_bytes / 2**20 if m.peak_memory_bytes else None,
            "params": r.params.total if r.params else None,
            "params_non_embedding": r.params.non_embedding if r.params else None,
            "wall_seconds": r.wall_seconds, "plugin": plugin_mark(r),
            **{c: m.get(c) for c in domain_columns([r])},
            "precision": r.precision or (r.config.get("train") or {}).get("precision"),
            **eval_columns(r, tasks), **{c: axis_value(r, c) for c in axes}, **costs[r.id],
        }
        if target is not None:
            curve = (curves or {}).get(r.id)
            ttt = time_to_target(r, curve, target)
            readable = bool(curve) and "val/loss" in curve  # a garbled metrics.csv reads, but not as a curve
            row.update(tokens_to_target=ttt.tokens, seconds_to_target=ttt.seconds,
                       seconds_estimated=ttt.seconds_estimated, steps_to_target=ttt.step,
                       target_reached=ttt.reached if readable else None,
                       curve_unreadable=not readable and r.path is not None
                       and (r.path.parent / "metrics.csv").exists())
        rows.append(row)
    rows.sort(key=lambda x: (x["status"] != "ok", x["val_ppl"] if x["val_ppl"] is not None else math.inf))
    for i, row in enumerate(rows, 1):  # an unfinished cell (failed, interrupted, oom, diverged) has no rank
        row["rank"] = i if row["status"] == "ok" else None
    return rows


def plugin_mark(record: Record) -> str | None:
    """'name@sha256[:8]' of each plugin part the cell used (record.plugins['parts']), None for built-ins."""
    parts = (record.plugins.get("parts") or {}).values()
    return ", ".join(f"{p['name']}@{str(p.get('sha256'))[:8]}" for p in parts) or None


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """(mean, sample std or None for one value); kept for callers of the old pivot format."""
    s = summarize(values)
    return s.mean, s.std


def pivots(records: list[Record], baseline=None) -> dict[str, dict]:
    """scale -> {'rows': row labels, 'cols': norms, 'cells': {(row, norm): Summary of the final
    validation PPL over ok seeds}, 'baseline': (row, norm) or None, 'comparisons': {(row, norm):
    Paired comparison against the baseline (bench.results.paired: paired t or Welch, Holm-adjusted)}}.
    ``baseline``: None (first row x first column of each scale), (act, norm) or 'ACT:NORM'."""
    base = resolve_baseline(baseline)
    try:
        bases = baseline_groups(records, base) if records else {}
    except ValueError as e:
        raise ConfigError(str(e)) from None
    comps = compare(records, base) if records else {}
    out = {}
    order = cell_order(records)
    for (scale, row, norm), recs in group_records(records).items():
        p = out.setdefault(scale, {"rows": order[scale][0], "cols": order[scale][1], "cells": {},
                                   "baseline": bases.get(scale), "comparisons": {}})
        ppls = [v for r in recs if (v := final_val_ppl(r)) is not None]
        if ppls:
            p["cells"][(row, norm)] = summarize(ppls)
        if (scale, row, norm) in comps:
            p["comparisons"][(row, norm)] = comps[(scale, row, norm)]
    return out


def resolve_at(at) -> tuple[str, float | None] | None:
    """None, (axis, budget) or 'flops=1e12' -> None or (axis, budget); a malformed string is a ConfigError."""
    if at is None or isinstance(at, tuple):
        return at
    try:
        return parse_budget(at)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def pivot_cell(stat: Summary | None, comp: Paired | None = None) -> str:
    """'mean ± CI half-width (n=k)' plus '*' / '†' when significantly better / worse than the
    baseline, ' (base)' on the baseline cell; '-' for a group without an ok seed."""
    if stat is None:
        return "-"
    text = f"{stat.mean:.3f}" + (f" ± {stat.half_width:.3f}" if stat.half_width is not None else "") + f" (n={stat.n})"
    if comp is not None:
        text += " (base)" if comp.is_baseline else comp.mark
    return text


def legend(p: dict, scale: str) -> str:
    """The test's legend for one scale's pivot, naming its baseline and when no test was possible."""
    base = p.get("baseline")
    if base is None:
        return f"{MARK_LEGEND} Scale {scale}: the baseline is not among its cells; no marks."
    text = f"{MARK_LEGEND} Baseline (base) at {scale}: {base[0]} x {base[1]}."
    comps = [c for c in p["comparisons"].values() if not c.is_baseline]
    why = {c.note for c in comps if c.test is None}
    if comps and all(c.test is None for c in comps) and why <= {NOT_LEARNED, NEEDS_TEST}:
        text += (" No marks: " + ("no group learned beyond token frequencies (see the note below)."
                                  if NOT_LEARNED in why else "the tests need scipy."))
    elif comps and all(c.test is None for c in comps):
        text += " No significance test was possible here: fewer than 2 seeds in a group (n < 2)."
    elif any(c.test is None for c in comps):
        text += " Groups without a mark include some where no test was possible (n < 2)."
    return text


COMPARISON_COLUMNS = ("scale", "activation", "norm", "n", "delta_loss", "ci95", "seed_sd", "effect", "test", "t",
                      "dof", "p", "p_holm", "result")


def comparison_rows(records: list[Record], baseline=None) -> list[dict]:
    """The test of each group against its scale's baseline, as table rows (raw numbers; ``test``
    names the test used)."""
    rows = []
    for scale, p in pivots(records, baseline).items():
        for (row, norm), c in p["comparisons"].items():
            base = c.is_baseline
            t = c.test
            rows.append({"scale": scale, "activation": row, "norm": norm,
                         "n": str(c.n) if base else (f"{c.n} pairs" if t and t.name == PAIRED
                                                     else f"{c.n} vs {c.n_baseline}"),
                         "delta_loss": None if base else c.diff, "ci95": None if base else c.ci,
                         "seed_sd": c.seed_sd,
                         "effect": None if base or c.effect is None else (c.effect_name, c.effect),
                         "test": "baseline" if base else (t.name if t else "none"),
                         "t": t.t if t else None, "dof": t.dof if t else None, "p": t.p if t else None,
                         "p_holm": c.p_holm, "few_seeds": c.few_seeds,
                         "result": c.verdict + (f" {c.mark}" if c.mark else "") + (" (n<3)" if c.few_seeds else "")})
    return rows


def unigram_reference(records: list[Record]) -> dict[str, float]:
    """The 'learned nothing' PPL per tokenizer fingerprint (one value per distinct validation text)."""
    refs = {}
    for r in records:
        d = r.data
        if d.get("unigram_ppl") is not None:
            tok = (r.config.get("data") or {}).get("tokenizer", "?")
            refs[f"{tok} ({str(d.get('tokenizer_fingerprint', ''))[:8]})"] = d["unigram_ppl"]
    return refs


def _fmt(v, kind=""):
    if v is None:
        return "-"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "pct":
        return f"{100 * v:.2f}%"
    if kind == "ppl":
        return f"{v:.3f}"
    if kind == "signed":
        return f"{v:+.4f}"
    if kind == "p":
        return f"{v:.3g}"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.4g}"
    return str(v)


fmt_value = _fmt  # the public name


def fmt_comparison(row: dict, col: str) -> str:
    kind = {"val_loss": "loss", "val_ppl": "ppl", "delta_loss": "signed", "delta_ppl": "signed", "p": "p",
            "p_holm": "p", "t": "stat", "dof": "stat", "seed_sd": "loss"}.get(col, "")
    v = row.get(col)
    if v is None:
        return "-"
    if col == "ci95":
        return f"[{v[0]:+.4f}, {v[1]:+.4f}]"
    if col == "effect":
        return f"{v[0]}={v[1]:+.2f}"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if kind == "loss":
        return f"{v:.4f}"
    if kind == "stat":
        return f"{v:.3g}"
    return _fmt(v, kind)

FORMATS = {"val_ppl": "ppl", "ood_ppl": "ppl", "tokens_per_sec": "", "mfu": "pct", "params": "int",
           "params_non_embedding": "int", "tokens_to_target": "int", "delta_loss": "signed", "delta_ppl": "signed",
           "p": "p", "tokens_per_sec_spread": "pct", "eval_share": "pct"}


def fmt_cell(row: dict, col: str) -> str:
    """A long-table cell as text: time-to-target says 'not reached' / 'no curve' and marks an
    estimated time with '~'."""
    if col in TARGET_COLUMNS:
        if row.get("target_reached") is None:
            if row.get("status") != "ok":
                return "-"
            return "curve unreadable" if row.get("curve_unreadable") else "no curve"
        if not row["target_reached"]:
            return "not reached"
        if col == "seconds_to_target" and row["seconds_to_target"] is not None:
            return ("~" if row.get("seconds_estimated") else "") + f"{row['seconds_to_target']:.4g}"
    return _fmt(row.get(col), FORMATS.get(col, "ppl" if col.endswith("_ppl") else ""))


def notes(records: list[Record], target: float | None = None) -> list[str]:
    """Footnotes: unigram reference PPL, MFU and memory bases, how time-to-target is measured, plugins."""
    lines = []
    if any(plugin_mark(r) for r in records):
        lines.append("plugin: the cell uses parts registered by a plugin (name@source sha256); each record's "
                     "'plugins' lists the modules loaded, their versions and how they were loaded.")
    for name, ppl in unigram_reference(records).items():
        lines.append(f"Reference: unigram PPL of the validation text under tokenizer {name}: {ppl:.3f} "
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
    return lines


def warning_lines(records: list[Record]) -> list[str]:
    """What may mislead a reader, one line each: statistics that need scipy, groups that have not
    learned beyond token frequencies (with the likely cause), a warmup longer than a quarter of the run."""
    lines = [] if have_scipy() else [NEEDS_SCIPY]
    return lines + [w for w in (not_learned_note(group_records(records)), warmup_warning(records),
                                eval_share_warning(records)) if w]


def _title(scale: str) -> str:
    return f"{scale}: final validation PPL (mean ± 95% CI over seeds)"


def to_markdown(records: list[Record], title: str, baseline=None, target: float | None = None,
                curves: dict | None = None, at=None) -> str:
    """The leaderboard as markdown: pivots, paired statistics, the equal steps / compute / time
    rankings (with ``curves``; ``at`` = 'flops=X' etc. adds the ranking at that budget), LR
    robustness (LR sweeps), every cell, notes."""
    compare_tables.check_at(records, curves, resolve_at(at))
    lines = [f"# {title}", ""]
    piv = pivots(records, baseline)
    for scale, p in piv.items():
        lines += [f"## {_title(scale)}", "",
                  "| activation | " + " | ".join(p["cols"]) + " |", "|---" * (len(p["cols"]) + 1) + "|"]
        for act in p["rows"]:
            lines.append(f"| {act} | " + " | ".join(pivot_cell(p["cells"].get((act, n)), p["comparisons"].get((act, n)))
                                                   for n in p["cols"]) + " |")
        lines += ["", legend(p, scale), ""]
    lines += [w for line in warning_lines(records) for w in (line, "")]
    lines += compare_tables.markdown_sections(records, curves, baseline, resolve_at(at))
    cols = long_columns(target, records)
    lines += ["## All cells by validation PPL", "", "| " + " | ".join(cols) + " |", "|---" * len(cols) + "|"]
    for row in long_rows(records, target, curves):
        lines.append("| " + " | ".join(fmt_cell(row, c) for c in cols) + " |")
    lines.append("")
    lines += eval_markdown(records, row_labels(records))
    lines += notes(records, target) + [n for n in (cost_note(records),) if n]
    return "\n".join(lines) + "\n"


def to_csv(records: list[Record], target: float | None = None, curves: dict | None = None) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=long_columns(target, records), extrasaction="ignore")
    w.writeheader()
    for row in long_rows(records, target, curves):
        w.writerow(row)
    return buf.getvalue()


def render_rich(records: list[Record], console: Console, title: str, baseline=None, target: float | None = None,
                curves: dict | None = None, at=None) -> None:
    compare_tables.check_at(records, curves, resolve_at(at))
    for scale, p in pivots(records, baseline).items():
        t = Table(title=f"{title} - {_title(scale)}", title_justify="left")
        t.add_column("activation")
        for norm in p["cols"]:
            t.add_column(norm, justify="right")
        for act in p["rows"]:
            t.add_row(act, *(pivot_cell(p["cells"].get((act, n)), p["comparisons"].get((act, n))) for n in p["cols"]))
        console.print(t)
        console.print(legend(p, scale), highlight=False)
    for line in warning_lines(records):
        console.print(line, style="yellow", highlight=False)
    compare_tables.render_rich(records, curves, console, title, baseline, resolve_at(at))
    t = Table(title=f"{title}: all cells by validation PPL", title_justify="left")
    hidden = ("id", "val_loss", "train_loss", "params_non_embedding") + (
        () if any(plugin_mark(r) for r in records) else ("plugin",))
    cols = [c for c in long_columns(target, records) if c not in hidden]
    for c in cols:  # full headers with their units, folded rather than cut on a narrow terminal
        t.add_column(header(c), justify="left" if c in ("scale", "activation", "norm", "status") else "right",
                     overflow="fold")
    for row in long_rows(records, target, curves):
        t.add_row(*(fmt_cell(row, c) for c in cols))
    for name, ppl in unigram_reference(records).items():
        ref = {"rank": "ref", "activation": f"unigram {name}", "val_ppl": _fmt(ppl, "ppl")}
        t.add_row(*(ref.get(c, "") for c in cols))
    console.print(t)
    for line in notes(records, target)[-2 if target is not None else -1:]:  # the MFU basis (and time to target)
        if line.startswith(("MFU", "Time to target")):
            console.print(line, highlight=False)
    if (line := cost_note(records)):
        console.print(line, style="yellow", highlight=False)


def write_tables(folder: Path, records: list[Record], title: str, baseline=None, target: float | None = None,
                 console: Console | None = None, at=None) -> list[Path]:
    """leaderboard.md and leaderboard.csv in ``folder`` (time-to-target read from the curves there).
    Never replaces a leaderboard listing cells the new one lacks (a record damaged or deleted since):
    the new tables go beside it as leaderboard.new.{md,csv}, with a message."""
    curves = load_curves(folder)  # the views and time-to-target read the validation curves
    md, cv = Path(folder) / "leaderboard.md", Path(folder) / "leaderboard.csv"
    lost = previous_ids(cv) - {r.id for r in records}
    if lost:
        md, cv = md.with_name("leaderboard.new.md"), cv.with_name("leaderboard.new.csv")
        msg = (f"{Path(folder) / 'leaderboard.csv'} lists {len(lost)} cell(s) with no usable record now "
               f"({', '.join(sorted(lost))}): kept it, wrote {md.name} and {cv.name} beside it")
        (console or Console(stderr=True)).print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)
    write_text(md, to_markdown(records, title, baseline, target, curves, at))
    write_text(cv, to_csv(records, target, curves))
    return [md, cv]


def previous_ids(path: Path) -> set[str]:
    """The cell ids of an existing leaderboard.csv (empty if none or unreadable)."""
    try:
        with open(path, newline="") as f:
            return {row["id"] for row in csv.DictReader(f) if row.get("id")}
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return set()
