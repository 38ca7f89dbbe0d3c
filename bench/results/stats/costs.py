"""What a cell costs, and how far its cost figures can be trusted: the throughput's spread over a
group's seeds, whether the cell was measured while sharing the machine, the share of its fit time
spent validating (``metrics.eval_share``: validation seconds over train + validation seconds, the init
pass included; probes, checkpoints and start-up are in neither), and the cost / quality frontier (the
groups no other group beats on both speed and PPL)."""

from __future__ import annotations

import math
import statistics

from ..records import Record
from .groups import group_records, summarize

WARN_SHARE = 0.30  # warn above this share of the fit time spent validating: the cell mostly measured itself
TARGET_SHARE = 0.15  # what a default cell is held under (the default matrix's val_tokens)
ADVICE = "raise --train.val_every or lower --train.val_tokens (either makes new cells)"
NOISY = 0.10  # a spread of tokens/s over seeds above this share of the mean is called noisy


def shared_machine(record: Record) -> bool:
    """True when the cell was measured while sharing the machine (the runner's ``sharing.shared``:
    --workers on CPU, or a load average above the core count at start)."""
    sharing = getattr(record, "sharing", None) or record.extra.get("sharing") or {}
    return bool(isinstance(sharing, dict) and sharing.get("shared"))


def cost_noise(records: list[Record]) -> dict[str, float | None]:
    """Record id -> the SD of tokens/s over its group's ok seeds, as a share of their mean (None
    with fewer than 2 seeds)."""
    out = {}
    for recs in group_records(records).values():
        tps = [r.metrics.tokens_per_sec for r in recs if r.status == "ok" and r.metrics.tokens_per_sec]
        spread = statistics.stdev(tps) / statistics.fmean(tps) if len(tps) >= 2 else None
        out.update({r.id: spread for r in recs})
    return out


def cost_note(records: list[Record]) -> str | None:
    """One line on how far the cost figures can be trusted, pointing to `bench cost` (None when no
    cell was measured on a shared machine and no spread over seeds passes NOISY)."""
    shared = [r.id for r in records if shared_machine(r)]
    noisy = [v for v in cost_noise(records).values() if v is not None]
    worst = max(noisy, default=0.0)
    if not shared and worst <= NOISY:
        return None
    text = "Cost figures are noisy here:"
    if shared:
        text += f" {len(shared)} cell(s) were measured while sharing the machine (shared machine: yes);"
    if noisy:
        text += f" tokens/s varies by up to {worst:.0%} (SD over seeds, as a share of the mean);"
    return text + " for clean cost figures run `bench cost`, one measurement at a time on an idle machine."


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


def pareto_front(points) -> list[int]:
    """Indices of the points (speed, ppl) that no other point dominates (at least as fast and at
    least as good, better in one), sorted by speed: the cost/quality frontier (higher speed and
    lower PPL are better)."""
    pts = [(float(s), float(q)) for s, q in points]
    front = []
    for i, (s, q) in enumerate(pts):
        dominated = any(s2 >= s and q2 <= q and (s2 > s or q2 < q) for j, (s2, q2) in enumerate(pts) if j != i)
        if not dominated and math.isfinite(s) and math.isfinite(q):
            front.append(i)
    return sorted(front, key=lambda i: pts[i][0])


def frontier_points(records: list[Record]) -> list[dict]:
    """Per group: mean tokens/s and mean val PPL over ok seeds, with their 95% CI half-widths."""
    pts = []
    for (scale, row, norm), recs in group_records(records).items():
        ok = [r for r in recs if r.status == "ok" and r.metrics.val_ppl is not None and r.metrics.tokens_per_sec]
        if not ok:
            continue
        s = summarize([r.metrics.tokens_per_sec for r in ok])
        q = summarize([r.metrics.val_ppl for r in ok])
        pts.append({"scale": scale, "row": row, "norm": norm, "activation": ok[0].activation,
                    "tps": s.mean, "tps_ci": s.half_width, "tps_sd": s.std, "ppl": q.mean, "ppl_ci": q.half_width,
                    "n": q.n, "shared": any(shared_machine(r) for r in ok)})
    return pts
