"""Which records pool as seed repeats of one group, in what order groups are shown, and which
group is each scale's baseline.

Order: the runner records the matrix's order of every axis (``axis_order``: axis -> values as the
matrix lists them); rows (activations), columns (norms) and scales follow it. Values it does not
name, and records from before it was recorded, follow in run order (start time)."""

from __future__ import annotations

from collections import defaultdict

from .records import Record


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def row_labels(records: list[Record]) -> dict[str, str]:
    """Cell id -> its group's row label: the activation, plus any config field (seed aside) that
    differs between cells of the same scale, activation and scheme, so only true seed repeats are
    pooled."""
    groups = defaultdict(list)
    for r in records:
        groups[(r.scale, r.activation, r.norm)].append(r)
    labels = {}
    for recs in groups.values():
        flats = [_flat(r.config) for r in recs]
        varying = sorted({k for f in flats for k in f
                          if k != "seed" and len({repr(g.get(k)) for g in flats}) > 1})
        for r, f in zip(recs, flats):
            labels[r.id] = r.activation + "".join(f" [{k}={f.get(k)}]" for k in varying)
    return labels


def run_order(records: list[Record]) -> list[Record]:
    """The records in the order they were started (a matrix trains its cells in the matrix's order,
    whatever the folder names sort as); records without a start time keep their place among equals."""
    return sorted(records, key=lambda r: str(r.started or ""))


def axis_order(record: Record) -> dict[str, list]:
    """The matrix order of each axis as the runner recorded it ({} for older records)."""
    order = getattr(record, "axis_order", None) or record.extra.get("axis_order") or {}
    return order if isinstance(order, dict) else {}


def _named(records: list[Record], axis: str) -> list[str]:
    seen: list[str] = []
    for r in records:
        seen += [str(v) for v in axis_order(r).get(axis) or [] if str(v) not in seen]
    return seen


def _rank(names: list[str]):
    return lambda v: names.index(v) if v in names else len(names)


def cell_order(records: list[Record]) -> dict[str, tuple[list[str], list[str]]]:
    """scale -> (row labels, norms) in the order of the pivot: the recorded axis order, then run
    order for what it does not name. Scales are ordered the same way."""
    recs = run_order(records)
    labels = row_labels(records)
    order: dict[str, tuple[list[str], list[str]]] = {}
    for r in recs:
        rows, cols = order.setdefault(r.scale, ([], []))
        if labels[r.id] not in rows:
            rows.append(labels[r.id])
        if r.norm not in cols:
            cols.append(r.norm)
    acts, norms = _rank(_named(recs, "activation")), _rank(_named(recs, "norm"))
    for rows, cols in order.values():  # stable sorts: run order among the unnamed
        rows.sort(key=lambda lab: acts(lab.split(" [")[0]))
        cols.sort(key=norms)
    scales = _rank(_named(recs, "scale"))
    return dict(sorted(order.items(), key=lambda kv: scales(kv[0])))


def group_records(records: list[Record]) -> dict[tuple[str, str, str], list[Record]]:
    """(scale, row label, norm) -> the records of that group (seed repeats, in run order), ordered
    by scale, row and column as ``cell_order`` orders them."""
    labels = row_labels(records)
    order = cell_order(records)
    scales = list(order)
    out: dict[tuple[str, str, str], list[Record]] = {}
    for r in run_order(records):
        out.setdefault((r.scale, labels[r.id], r.norm), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: (scales.index(kv[0][0]), order[kv[0][0]][0].index(kv[0][1]),
                                                   order[kv[0][0]][1].index(kv[0][2]))))


def parse_baseline(text: str | None) -> tuple[str, str] | None:
    """'ACT:NORM' -> (act, norm); None -> None (the default baseline)."""
    if text is None or text == "":
        return None
    if ":" not in text:
        raise ValueError(f"baseline must be ACTIVATION:NORM (e.g. swiglu:pre), got {text!r}")
    act, norm = text.rsplit(":", 1)
    if not act.strip() or not norm.strip():
        raise ValueError(f"baseline must be ACTIVATION:NORM (e.g. swiglu:pre), got {text!r}")
    return act.strip(), norm.strip()


def baseline_groups(records: list[Record],
                    baseline: tuple[str, str] | None = None) -> dict[str, tuple[str, str] | None]:
    """scale -> the (row label, norm) of its baseline group. Default: the first row x the first
    column of each scale as ``cell_order`` orders them (the matrix's first activation and norm). A given
    (act, norm) matches a row label exactly, or else the first row of that activation; a scale
    without it gets None. Raises ValueError if no scale has it."""
    out = {}
    order = cell_order(records)
    for scale, (rows, cols) in order.items():
        if baseline is None:
            out[scale] = (rows[0], cols[0])
            continue
        act, norm = baseline
        row = act if act in rows else next((r for r in rows if r.split(" [")[0] == act), None)
        out[scale] = (row, norm) if row is not None and norm in cols else None
    if baseline is not None and not any(out.values()):
        groups = sorted({f"{r.split(' [')[0]}:{c}" for rows, cols in order.values() for r in rows for c in cols})
        raise ValueError(f"baseline {baseline[0]}:{baseline[1]} is not among the cells; valid: {', '.join(groups)}")
    return out
