"""What validation costs a cell: the share of its fit time spent validating (``metrics.eval_share``:
validation seconds over train + validation seconds, the init pass included; probes, checkpoints and
start-up are in neither), and a warning when it dominates."""

from __future__ import annotations

from .records import Record

WARN_SHARE = 0.30  # warn above this share: the cell mostly measured itself
TARGET_SHARE = 0.15  # what a default cell is held under (the default matrix's val_tokens)
ADVICE = "raise --train.val_every or lower --train.val_tokens (either makes new cells)"


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
            f"{max(over.values()):.0%}; {how}): for short runs, {ADVICE}.")


def planned_eval_share(cfg) -> float:
    """The share of a cell's compute its validation is planned to take, from a resolved config: the
    forward tokens of the init pass (the in-domain split) and of every validation (each ``val_every``
    steps and at the end, over every split), against 3x the training tokens (forward and backward).
    An upper bound: a split smaller than ``val_tokens`` is read whole."""
    t, d = cfg.train, cfg.data
    seq = cfg.model.block_size
    per_split = max(1, t.val_tokens // seq) * seq
    splits = 1 + bool(d.ood_corpus) + len(d.eval or {})
    points = t.max_steps // t.val_every + bool(t.max_steps % t.val_every)
    evaluated = per_split * (points * splits + bool(t.init_val))
    trained = 3 * t.max_steps * t.grad_accum * t.batch_size * seq
    return evaluated / (evaluated + trained)
