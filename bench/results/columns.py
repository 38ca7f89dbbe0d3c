"""Long-table columns beyond the fixed ones: every swept or overridden axis, the cost figures'
noise (their spread over seeds) and the flag for cells measured while sharing the machine; and
the headers with their units, as the terminal shows them."""

from __future__ import annotations

import statistics

from .frontier import shared_machine
from .grouping import _flat, group_records
from .records import Record
from .validation_cost import eval_share

STANDARD_AXES = ("scale", "activation", "norm", "seed")
COST_COLUMNS = ("tokens_per_sec_spread", "shared", "eval_share")
HEADERS = {"val_ppl": "val PPL", "ood_ppl": "OOD PPL", "val_loss": "val loss (nats)", "train_loss": "train loss (nats)",
           "tokens_per_sec": "tokens/s", "tokens_per_sec_spread": "tokens/s spread (SD over seeds, %)",
           "shared": "shared machine", "eval_share": "validation share of fit time (%)",
           "mfu": "MFU (%)", "peak_memory_mb": "peak memory (MiB)",
           "params": "parameters", "params_non_embedding": "non-embedding parameters",
           "wall_seconds": "wall time (s)", "tokens_to_target": "tokens to target",
           "seconds_to_target": "seconds to target (s)"}


def header(col: str) -> str:
    return HEADERS.get(col, col)


def axis_columns(records: list[Record]) -> tuple[str, ...]:
    """Every axis the matrix swept beyond scale / activation / norm / seed (record.axes), then every
    config field that differs between cells of one (scale, activation, norm) group (an override
    that splits a row), in first-seen order."""
    cols = [k for r in records for k in r.axes if k not in STANDARD_AXES]
    for recs in _by_cell(records).values():
        flats = [_flat(r.config) for r in recs]
        cols += sorted(k for k in {k for f in flats for k in f}
                       if k != "seed" and len({repr(f.get(k)) for f in flats}) > 1)
    return tuple(dict.fromkeys(cols))


def _by_cell(records: list[Record]) -> dict[tuple, list[Record]]:
    out: dict[tuple, list[Record]] = {}
    for r in records:
        out.setdefault((r.scale, r.activation, r.norm), []).append(r)
    return out


def axis_value(record: Record, col: str):
    v = record.axes.get(col)
    return v if v is not None else _flat(record.config).get(col)


def cost_noise(records: list[Record]) -> dict[str, float | None]:
    """Record id -> the SD of tokens/s over its group's ok seeds, as a share of their mean (None
    with fewer than 2 seeds)."""
    out = {}
    for recs in group_records(records).values():
        tps = [r.metrics.tokens_per_sec for r in recs if r.status == "ok" and r.metrics.tokens_per_sec]
        spread = statistics.stdev(tps) / statistics.fmean(tps) if len(tps) >= 2 else None
        out.update({r.id: spread for r in recs})
    return out


def cost_cells(records: list[Record]) -> dict[str, dict]:
    """Record id -> {'tokens_per_sec_spread': ..., 'shared': 'yes' or None, 'eval_share': ...}."""
    noise = cost_noise(records)
    return {r.id: {"tokens_per_sec_spread": noise.get(r.id), "shared": "yes" if shared_machine(r) else None,
                   "eval_share": eval_share(r)} for r in records}


def cost_note(records: list[Record]) -> str | None:
    """One line on how far the cost figures can be trusted, pointing to `bench cost` (None when no
    cell was measured on a shared machine and no spread over seeds passes 10%)."""
    shared = [r.id for r in records if shared_machine(r)]
    noisy = [v for v in cost_noise(records).values() if v is not None]
    worst = max(noisy, default=0.0)
    if not shared and worst <= 0.10:
        return None
    text = "Cost figures are noisy here:"
    if shared:
        text += f" {len(shared)} cell(s) were measured while sharing the machine (shared machine: yes);"
    if noisy:
        text += f" tokens/s varies by up to {worst:.0%} (SD over seeds, as a share of the mean);"
    return text + " for clean cost figures run `bench cost`, one measurement at a time on an idle machine."
