"""Downstream accuracies (record['eval'], written by `bench eval`) as leaderboard columns and a
report section."""

from __future__ import annotations


def plain(r) -> dict:
    """A record as a dict, whether a typed Record (its extra keys, 'eval' among them, merged) or a dict."""
    return r.to_dict() if hasattr(r, "to_dict") else r


def eval_tasks(records: list[dict]) -> list[str]:
    """Every task any record was evaluated on, in first-seen order."""
    seen: list[str] = []
    for r in map(plain, records):
        seen += [t for t in (r.get("eval") or {}) if t not in seen]
    return seen


def eval_columns(record: dict, tasks: list[str]) -> dict:
    """'<task>:acc' (acc_norm when the task has no acc) per task; None where not evaluated."""
    ev = plain(record).get("eval") or {}
    out = {}
    for t in tasks:
        m = ev.get(t) or {}
        out[f"{t}:acc"] = m.get("acc", m.get("acc_norm"))
    return out


def eval_markdown(records: list[dict], labels: dict[str, str] | None = None) -> list[str]:
    """A 'Downstream accuracy' markdown section ([] when no cell was evaluated)."""
    tasks = eval_tasks(records)
    if not tasks:
        return []
    cols = [f"{t}:acc" for t in tasks]
    lines = ["## Downstream accuracy (lm-evaluation-harness, zero-shot unless noted)", "",
             "| cell | precision | " + " | ".join(cols) + " | n |", "|---" * (len(cols) + 3) + "|"]
    for r in map(plain, records):
        if not r.get("eval"):
            continue
        vals = eval_columns(r, tasks)
        n = ", ".join(str((r["eval"].get(t) or {}).get("n", "-")) for t in tasks)
        prec = r.get("precision") or (r.get("config") or {}).get("train", {}).get("precision", "-")
        lines.append(f"| {(labels or {}).get(r['id'], r['id'])} ({r['norm']}) | {prec} | "
                     + " | ".join("-" if v is None else f"{v:.4f}" for v in vals.values()) + f" | {n} |")
    lines += ["", "Accuracy of a tiny model is near chance (1 / number of choices); n = examples scored.", ""]
    return lines
