"""Records -> leaderboard tables: a PPL pivot per scale and a long table with the costs."""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .results import load_records, write_text

LONG_COLUMNS = ("rank", "id", "scale", "activation", "norm", "seed", "status", "val_ppl", "ood_ppl", "val_loss",
                "train_loss", "tokens_per_sec", "mfu", "peak_memory_mb", "params", "params_non_embedding",
                "wall_seconds")


def long_rows(records: list[dict]) -> list[dict]:
    """One row per cell, sorted by validation PPL; failed cells last with their status."""
    rows = []
    for r in records:
        m = r.get("metrics") or {}
        rows.append({
            "id": r["id"], "scale": r["scale"], "activation": r["activation"], "norm": r["norm"], "seed": r["seed"],
            "status": r["status"], "val_ppl": m.get("val_ppl"), "ood_ppl": m.get("ood_ppl"),
            "val_loss": m.get("val_loss"), "train_loss": m.get("train_loss"),
            "tokens_per_sec": m.get("tokens_per_sec"), "mfu": m.get("mfu"),
            "peak_memory_mb": m["peak_memory_bytes"] / 2**20 if m.get("peak_memory_bytes") else None,
            "params": r["params"]["total"], "params_non_embedding": r["params"]["non_embedding"],
            "wall_seconds": r.get("wall_seconds"),
        })
    rows.sort(key=lambda x: (x["status"] != "ok", x["val_ppl"] if x["val_ppl"] is not None else math.inf))
    for i, row in enumerate(rows, 1):
        row["rank"] = i
    return rows


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def row_labels(records: list[dict]) -> dict[str, str]:
    """Cell id -> its pivot row: the activation, plus any config field (seed aside) that differs
    between cells of the same scale, activation and scheme, so only true seed repeats are pooled."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["scale"], r["activation"], r["norm"])].append(r)
    labels = {}
    for recs in groups.values():
        flats = [_flat(r.get("config") or {}) for r in recs]
        varying = sorted({k for f in flats for k in f
                          if k != "seed" and len({repr(g.get(k)) for g in flats}) > 1})
        for r, f in zip(recs, flats):
            labels[r["id"]] = r["activation"] + "".join(f" [{k}={f.get(k)}]" for k in varying)
    return labels


def mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def pivots(records: list[dict]) -> dict[str, dict]:
    """scale -> {'rows': activations, 'cols': norms, 'cells': {(act, norm): (mean, std, n)}}."""
    by_scale = defaultdict(lambda: defaultdict(list))
    order = defaultdict(lambda: ([], []))
    labels = row_labels(records)
    for r in records:
        acts, norms = order[r["scale"]]
        row = labels[r["id"]]
        if row not in acts:
            acts.append(row)
        if r["norm"] not in norms:
            norms.append(r["norm"])
        ppl = (r.get("metrics") or {}).get("val_ppl")
        if r["status"] == "ok" and ppl is not None:
            by_scale[r["scale"]][(row, r["norm"])].append(ppl)
    out = {}
    for scale, (acts, norms) in order.items():
        out[scale] = {"rows": acts, "cols": norms,
                      "cells": {k: (*mean_std(v), len(v)) for k, v in by_scale[scale].items()}}
    return out


def unigram_reference(records: list[dict]) -> dict[str, float]:
    """The 'learned nothing' PPL per tokenizer fingerprint (one value per distinct validation text)."""
    refs = {}
    for r in records:
        d = r.get("data") or {}
        if d.get("unigram_ppl") is not None:
            refs[f"{r['config']['data']['tokenizer']} ({d['tokenizer_fingerprint'][:8]})"] = d["unigram_ppl"]
    return refs


def _fmt(v, kind=""):
    if v is None:
        return "-"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "pct":
        return f"{100 * v:.2f}%"
    if kind == "ppl":
        return f"{v:.3f}"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.4g}"
    return str(v)


FORMATS = {"val_ppl": "ppl", "ood_ppl": "ppl", "tokens_per_sec": "", "mfu": "pct", "params": "int",
           "params_non_embedding": "int"}


def _pivot_cell(stat) -> str:
    if stat is None:
        return "-"
    mean, std, n = stat
    return f"{mean:.3f}" + (f" ± {std:.3f} (n={n})" if std is not None else "")


def render_rich(records: list[dict], console: Console, title: str) -> None:
    for scale, p in pivots(records).items():
        t = Table(title=f"{title} - {scale}: final validation PPL (mean ± std over seeds)", title_justify="left")
        t.add_column("activation")
        for norm in p["cols"]:
            t.add_column(norm, justify="right")
        for act in p["rows"]:
            t.add_row(act, *(_pivot_cell(p["cells"].get((act, n))) for n in p["cols"]))
        console.print(t)
    t = Table(title=f"{title}: all cells by validation PPL", title_justify="left")
    cols = [c for c in LONG_COLUMNS if c not in ("id", "val_loss", "train_loss", "params_non_embedding")]
    for c in cols:
        t.add_column(c, justify="left" if c in ("scale", "activation", "norm", "status") else "right")
    for row in long_rows(records):
        t.add_row(*(_fmt(row[c], FORMATS.get(c, "")) for c in cols))
    for name, ppl in unigram_reference(records).items():
        t.add_row("ref", "", f"unigram {name}", "", "", "", _fmt(ppl, "ppl"), *[""] * (len(cols) - 7))
    console.print(t)


def to_markdown(records: list[dict], title: str) -> str:
    lines = [f"# {title}", ""]
    for scale, p in pivots(records).items():
        lines += [f"## {scale}: final validation PPL (mean ± std over seeds)", "",
                  "| activation | " + " | ".join(p["cols"]) + " |", "|---" * (len(p["cols"]) + 1) + "|"]
        for act in p["rows"]:
            lines.append(f"| {act} | " + " | ".join(_pivot_cell(p["cells"].get((act, n))) for n in p["cols"]) + " |")
        lines.append("")
    lines += ["## All cells by validation PPL", "", "| " + " | ".join(LONG_COLUMNS) + " |",
              "|---" * len(LONG_COLUMNS) + "|"]
    for row in long_rows(records):
        lines.append("| " + " | ".join(_fmt(row[c], FORMATS.get(c, "")) for c in LONG_COLUMNS) + " |")
    lines.append("")
    for name, ppl in unigram_reference(records).items():
        lines.append(f"Reference: unigram PPL of the validation text under tokenizer {name}: {ppl:.3f} "
                     "(what a model that learned nothing but token frequencies scores).")
    basis = {(r.get("metrics") or {}).get("mfu_basis") for r in records} - {None}
    mem = {(r.get("metrics") or {}).get("peak_memory_basis") for r in records} - {None}
    if basis:
        lines.append(f"MFU is against: {'; '.join(sorted(basis))}. Peak memory is {'; '.join(sorted(mem))}.")
    return "\n".join(lines) + "\n"


def to_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LONG_COLUMNS)
    w.writeheader()
    for row in long_rows(records):
        w.writerow(row)
    return buf.getvalue()


def write_tables(folder: Path, records: list[dict], title: str) -> tuple[Path, Path]:
    md, cv = Path(folder) / "leaderboard.md", Path(folder) / "leaderboard.csv"
    write_text(md, to_markdown(records, title))
    write_text(cv, to_csv(records))
    return md, cv
