"""The cost / quality frontier: per group, mean throughput and validation PPL over ok seeds, and
the groups no other group beats on both."""

from __future__ import annotations

import math

from .grouping import group_records
from .records import Record
from .summary import summarize


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


def shared_machine(record: Record) -> bool:
    """True when the cell was measured while sharing the machine (the runner's ``sharing.shared``:
    --workers on CPU, or a load average above the core count at start)."""
    sharing = getattr(record, "sharing", None) or record.extra.get("sharing") or {}
    return bool(isinstance(sharing, dict) and sharing.get("shared"))
