"""What `bench check` prints: a table of the cells that are not ok (every cell with --verbose) and
one summary line."""

from __future__ import annotations

import math

from ....console import out as console
from ....results.tables import fmt
from .compare import CellReport, Diff


def _fmt(value) -> str:
    return fmt(value, ".6f" if isinstance(value, float) else ",")


def _fmt_diff(d: Diff) -> str:
    if isinstance(d.baseline, (int, float)) and isinstance(d.now, (int, float)):
        delta = d.now - d.baseline
        return fmt(delta, "+," if isinstance(delta, int) else "+.2e")
    return "-"


def _fmt_ratio(ratio: float) -> str:
    return "mismatch" if math.isinf(ratio) else fmt(ratio, ".2f")


STATUS_STYLE = {"ok": "green", "regression": "bold red", "error": "bold red", "new": "yellow", "missing": "yellow"}


def render(reports: list[CellReport], verbose: bool) -> None:
    """One row per cell that is not ok (its largest deviation, and how many numbers are over tolerance);
    verbose: every cell, every number over tolerance, and each passing cell's closest call."""
    from rich.table import Table

    shown = [r for r in reports if verbose or r.status != "ok"]
    if not shown:
        return
    t = Table(title="bench check: " + ("every cell" if verbose else "regressions and new/missing cells")
              + "; x tol = |now - baseline| / tolerance (docs/check.md)", title_justify="left")
    for col in ("cell", "status", "quantity", "baseline", "now", "diff", "x tol", "over tol"):
        t.add_column(col, justify="left" if col in ("cell", "status", "quantity") else "right",
                     no_wrap=col in ("cell", "quantity"))
    for r in shown:
        style = STATUS_STYLE[r.status]
        status = f"[{style}]{r.status}[/]" + (f" ({r.note})" if r.note and r.diffs else "")
        if not r.diffs:  # new, missing, error
            t.add_row(r.name, status, r.note, "", "", "", "", "")
            continue
        failed = sorted((d for d in r.diffs if d.failed), key=lambda d: -d.ratio)
        if failed:
            rows = failed if verbose else failed[:1]
        else:  # the closest call among the measured numbers (the held-out loss when all are equal)
            rows = [max((d for d in r.diffs if not d.what.startswith("params")),
                        key=lambda d: (d.ratio, d.what == "loss.val"))]
        for i, d in enumerate(rows):
            first = i == 0
            t.add_row(r.name if first else "", status if first else "", d.what, _fmt(d.baseline), _fmt(d.now),
                      _fmt_diff(d), _fmt_ratio(d.ratio), f"{len(failed)} of {len(r.diffs)}" if first else "")
    console.print(t)


def summary(reports: list[CellReport], seconds: float, jobs: int, untrained: bool = False) -> str:
    checked = [r for r in reports if r.status != "missing"]
    bad = [r for r in reports if r.status in ("regression", "error")]
    new = [r for r in reports if r.status == "new"]
    missing = [r for r in reports if r.status == "missing"]
    ratios = [(d.ratio, r.name, d.what) for r in reports for d in r.diffs
              if not d.what.startswith("params") and not math.isinf(d.ratio)]
    text = f"{len(checked)} cells checked{' (untrained numbers only)' if untrained else ''}, {len(bad)} regressions"
    if new:
        text += f", {len(new)} new (not in baseline)"
    if missing:
        text += f", {len(missing)} missing (in baseline only)"
    if ratios:
        ratio, name, what = max(ratios)
        if ratio > 1:
            text += f"; largest deviation {ratio:,.0f} x tolerance ({name} {what})"
        elif ratio > 0:
            text += f"; closest call {ratio:.2f} x tolerance ({name} {what})"
        else:
            text += "; every loss and gradient norm bitwise equal to the baseline"
    return text + f" ({seconds:.1f} s, {jobs} job{'s' if jobs != 1 else ''})"
