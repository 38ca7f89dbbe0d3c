"""A group: one cell's seed repeats. Which records pool as a group, in what order groups are shown,
which group is each scale's baseline, what a group scores over its seeds (the mean with a Student-t
confidence interval) and whether it learned anything beyond token frequencies.

Order: the runner records the matrix's order of every axis (``axis_order``: axis -> values as the
matrix lists them); rows (activations), columns (norms) and scales follow it. Values it does not
name, and records from before it was recorded, follow in run order (start time).

Mean over seeds: ``mean ± t_{(1+c)/2, n-1} * s / sqrt(n)`` with the sample standard deviation ``s``
(n-1 in the denominator); one seed has the mean and no interval.

Learned: a group is "learned" when its mean final validation loss is clearly below every reference
its records carry: the unigram loss of the validation text (ln of ``data.unigram_ppl``: what
predicting token frequencies scores) and, when the runner measured it, the validation loss at
initialization (``metrics.init_val_loss``). "Clearly" is a margin of ``MARGIN`` nats (a PPL at most
~0.905x the reference's). Significance between groups that have not learned is noise about noise, so
they get no mark."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

from ..records import Record

CONFIDENCE = 0.95
MARGIN = 0.1  # nats
WARMUP_SHARE = 0.25  # warn when warmup takes more than this share of the run


def flat(d: dict, prefix: str = "") -> dict:
    """A nested config as {'section.field': value}."""
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def stratum(record: Record) -> str:
    """What a group is compared within: its scale, and on a scale ladder (`bench ladder`, axis N) its
    rung, 'micro N=13k': every rung has its own baseline, pivot and verdicts."""
    n = (record.axes or {}).get("N")
    return record.scale if n is None else f"{record.scale} N={n}"


def row_labels(records: list[Record], ignore: tuple[str, ...] = ("seed",)) -> dict[str, str]:
    """Cell id -> its group's row label: the activation, plus any config field (those in ``ignore``
    aside) that differs between cells of the same scale, activation and scheme, so only true seed
    repeats are pooled."""
    groups = defaultdict(list)
    for r in records:
        groups[(stratum(r), r.activation, r.norm)].append(r)
    labels = {}
    for recs in groups.values():
        flats = [flat(r.config) for r in recs]
        keys = dict.fromkeys(k for f in flats for k in f)  # each key once: a check per key is over every cell
        varying = sorted(k for k in keys if k not in ignore and len({repr(f.get(k)) for f in flats}) > 1)
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
        rows, cols = order.setdefault(stratum(r), ([], []))
        if labels[r.id] not in rows:
            rows.append(labels[r.id])
        if r.norm not in cols:
            cols.append(r.norm)
    acts, norms = _rank(_named(recs, "activation")), _rank(_named(recs, "norm"))
    for rows, cols in order.values():  # stable sorts: run order among the unnamed
        rows.sort(key=lambda lab: acts(lab.split(" [")[0]))
        cols.sort(key=norms)
    scales, rungs = _rank(_named(recs, "scale")), _rank(_named(recs, "N"))
    return dict(sorted(order.items(), key=lambda kv: (scales(kv[0].split(" N=")[0]), rungs(kv[0].partition(" N=")[2]))))


def group_records(records: list[Record]) -> dict[tuple[str, str, str], list[Record]]:
    """(scale, row label, norm) -> the records of that group (seed repeats, in run order), ordered
    by scale, row and column as ``cell_order`` orders them."""
    labels = row_labels(records)
    order = cell_order(records)
    scales = list(order)
    out: dict[tuple[str, str, str], list[Record]] = {}
    for r in run_order(records):
        out.setdefault((stratum(r), labels[r.id], r.norm), []).append(r)
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


# ---- a group's numbers over seeds ----------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """Mean over seeds with a Student-t confidence interval (``half_width`` None when n < 2)."""

    mean: float
    n: int
    std: float | None
    half_width: float | None
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def summarize(values, confidence: float = CONFIDENCE) -> Summary:
    """Mean and the two-sided Student-t interval (scipy.stats.t.interval around the mean)."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("summarize needs at least one value")
    n = len(vals)
    mean = statistics.fmean(vals)
    if n < 2:
        return Summary(mean, n, None, None, confidence)
    from scipy.stats import t

    std = statistics.stdev(vals)
    half = float(t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(mean, n, std, half, confidence)


def final_val_loss(record: Record) -> float | None:
    """The final validation loss of an ok record (None otherwise)."""
    if record.status != "ok":
        return None
    m = record.metrics
    if m.val_loss is not None:
        return float(m.val_loss)
    if m.val_ppl is not None and m.val_ppl > 0:
        return math.log(m.val_ppl)
    return None


def final_val_ppl(record: Record) -> float | None:
    if record.status != "ok":
        return None
    m = record.metrics
    if m.val_ppl is not None:
        return float(m.val_ppl)
    return math.exp(m.val_loss) if m.val_loss is not None else None


# ---- learned beyond token frequencies? ----------------------------------------------------------

def references(record: Record) -> dict[str, float]:
    """name -> reference loss (nats) this cell must beat."""
    out = {}
    uni = record.data.get("unigram_ppl")
    if isinstance(uni, (int, float)) and uni > 0:
        out["unigram"] = math.log(uni)
    init = record.metrics.get("init_val_loss")
    if isinstance(init, (int, float)) and math.isfinite(init):
        out["init"] = float(init)
    return out


def learned(records: list[Record]) -> bool | None:
    """True / False for a group of seed repeats; None when it has no ok seed or no reference."""
    losses = [v for r in records if (v := final_val_loss(r)) is not None]
    refs = [v for r in records for v in references(r).values()]
    if not losses or not refs:
        return None
    return statistics.fmean(losses) < min(refs) - MARGIN


def warmup_share(record: Record) -> float | None:
    t = record.config.get("train") or {}
    try:
        return float(t["warmup_steps"]) / float(t["max_steps"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def likely_cause(records: list[Record]) -> str:
    """The probable reason a set of cells learned nothing: too few steps, and the warmup's share."""
    steps = sorted({int(s) for r in records if (s := (r.config.get("train") or {}).get("max_steps"))})
    shares = [s for r in records if (s := warmup_share(r)) is not None]
    text = f"likely too few steps ({', '.join(map(str, steps))} optimizer steps)" if steps else "likely too few steps"
    if shares and max(shares) > WARMUP_SHARE:
        text += f", with warmup taking {max(shares):.0%} of the run"
    return text


def not_learned_note(groups: dict[tuple, list[Record]]) -> str | None:
    """One line naming the groups that have not learned, with the likely cause (None if all have)."""
    bad = {k: recs for k, recs in groups.items() if learned(recs) is False}
    if not bad:
        return None
    names = [f"{k[1]} / {k[2]} ({k[0]})" for k in bad]
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    every = " (every cell)" if len(bad) == len([k for k, r in groups.items() if learned(r) is not None]) else ""
    return (f"Not learned{every}: {len(bad)} group(s) end no more than {MARGIN} nats below the unigram reference "
            f"(or the loss at init): {shown}; {likely_cause([r for recs in bad.values() for r in recs])}. "
            "They get no significance mark: train longer before comparing them.")


def warmup_warning(records: list[Record]) -> str | None:
    """A warning when the warmup takes more than a quarter of any cell's run."""
    shares = {r.id: s for r in records if (s := warmup_share(r)) is not None and s > WARMUP_SHARE}
    if not shares:
        return None
    worst = max(shares.values())
    return (f"Warning: warmup takes more than {WARMUP_SHARE:.0%} of the run in {len(shares)} cell(s) (up to "
            f"{worst:.0%}): the learning rate barely left warmup; raise --train.max_steps or lower "
            "--train.warmup_steps.")
