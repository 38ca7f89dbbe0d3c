"""Downstream accuracies (record['eval'], written by `bench eval`) as leaderboard columns and a
report section."""

from __future__ import annotations


from .records import Record


def _eval(r: Record) -> dict:
    """record['eval'] (written by `bench eval`, kept among the record's extra keys)."""
    ev = r.extra.get("eval")
    return ev if isinstance(ev, dict) else {}


def eval_tasks(records: list[Record]) -> list[str]:
    """Every task any record was evaluated on, in first-seen order."""
    seen: list[str] = []
    for r in records:
        seen += [t for t in _eval(r) if t not in seen]
    return seen


def eval_columns(record: Record, tasks: list[str]) -> dict:
    """'<task>:acc' (acc_norm when the task has no acc) per task; None where not evaluated."""
    ev = _eval(record)
    out = {}
    for t in tasks:
        m = ev.get(t) or {}
        out[f"{t}:acc"] = m.get("acc", m.get("acc_norm"))
    return out


def eval_markdown(records: list[Record], labels: dict[str, str] | None = None) -> list[str]:
    """A 'Downstream accuracy' markdown section ([] when no cell was evaluated)."""
    tasks = eval_tasks(records)
    if not tasks:
        return []
    cols = [f"{t}:acc" for t in tasks]
    lines = ["## Downstream accuracy (lm-evaluation-harness, zero-shot unless noted)", "",
             "| cell | precision | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 3) + "|"]
    for r in records:
        if not _eval(r):
            continue
        vals = eval_columns(r, tasks)
        n = ", ".join(str((_eval(r).get(t) or {}).get("n", "-")) for t in tasks)
        prec = r.precision or (r.config.get("train") or {}).get("precision", "-")
        lines.append(f"| {(labels or {}).get(r.id, r.id)} ({r.norm}) | {prec} | "
                     + " | ".join("-" if v is None else f"{v:.4f}" for v in vals.values()) + f" | {n} |")
    lines += ["", "Accuracy of a tiny model is near chance (1 / number of choices); n = examples scored.", ""]
    return lines
