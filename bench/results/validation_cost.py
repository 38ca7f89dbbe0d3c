"""What validation costs a cell: the share of its fit time spent validating (``metrics.eval_share``:
validation seconds over train + validation seconds, the init pass included; probes, checkpoints and
start-up are in neither), and a warning when it dominates."""

from __future__ import annotations

from .records import Record

WARN_SHARE = 0.30  # warn above this share: the cell mostly measured itself


def eval_share(record: Record) -> float | None:
    v = record.metrics.get("eval_share")
    return float(v) if isinstance(v, (int, float)) else None


def eval_share_warning(records: list[Record]) -> str | None:
    """One line when validation took more than WARN_SHARE of any cell's fit time (None otherwise)."""
    over = {r.id: s for r in records if (s := eval_share(r)) is not None and s > WARN_SHARE}
    if not over:
        return None
    settings = sorted({(t.get("val_tokens"), t.get("val_every")) for r in records if r.id in over
                       for t in [r.config.get("train") or {}]}, key=repr)
    how = "; ".join(f"{tok} tokens per split every {every} steps" for tok, every in settings[:3])
    return (f"Warning: validation took more than {WARN_SHARE:.0%} of the fit time in {len(over)} cell(s) (up to "
            f"{max(over.values()):.0%}; {how}): raise --train.val_every or lower --train.val_tokens for short runs "
            "(either makes new cells).")
