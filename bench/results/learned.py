"""Has a cell learned anything beyond token frequencies? Significance between models that have
not is noise about noise, so such cells get no mark.

A cell is "learned" when its final validation loss is clearly below every reference it carries:
the unigram loss of the validation text (ln of ``data.unigram_ppl``: what predicting token
frequencies scores) and, when the runner measured it, the validation loss at initialization
(``metrics.init_val_loss``). "Clearly" is a margin of ``MARGIN`` nats (a PPL at most ~0.905x the
reference's). A group (seed repeats) is judged on its mean final loss over ok seeds."""

from __future__ import annotations

import math
import statistics

from .records import Record
from .summary import final_val_loss

MARGIN = 0.1  # nats
WARMUP_SHARE = 0.25  # warn when warmup takes more than this share of the run


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
