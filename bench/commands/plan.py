"""`bench plan`: a dry run, every cell with its sizes, parameter counts and estimated memory."""

from __future__ import annotations

import json

from .common import add_filters, add_gpu_arg, add_overrides, cells_from

HELP = "dry run: every cell with its sizes and parameter counts"


def add_parser(sub):
    p = sub.add_parser("plan", help=HELP)
    add_filters(p)
    p.add_argument("--json", action="store_true",
                   help='print {"cells": [{"id", "activation", "norm", "scale", "intermediate_size", '
                        '"params", "params_non_embedding", ...}]}')
    add_gpu_arg(p)
    add_overrides(p)
    return p


def plan_rows(cells, gpu: str | None = None) -> list[dict]:
    from models import count_params

    from ..launch.memory import GPUS, MAX_TRACES, estimate, formula_estimate, shape_key
    from ..results.stats.costs import planned_eval_share

    rows = []
    # tracing a training step costs seconds per distinct shape (a minute at 1B): only when a GPU is asked
    # about, and for at most MAX_TRACES shapes
    shapes = {shape_key(c.config, True) for c in cells} if gpu else set()
    trace = bool(gpu) and len(shapes) <= MAX_TRACES
    if gpu and not trace:
        from ..console import err

        err.print(f"[yellow]note:[/] {len(shapes)} distinct model shapes: memory by the closed formula (tracing "
                  f"each costs seconds; at most {MAX_TRACES} are traced, e.g. narrow --activation/--norm)",
                  highlight=False)
    for cell in cells:
        c = count_params(cell.config.model)
        flash = gpu is not None or cell.config.train.accelerator == "gpu"
        mem = estimate(cell.config, flash=flash) if trace else formula_estimate(cell.config, flash=flash)
        rows.append({
            "id": cell.id, "activation": cell.config.model.activation, "norm": cell.config.norm,
            "scale": cell.config.scale, "seed": cell.config.seed, "intermediate_size": c.intermediate_size,
            "params": c.total, "params_non_embedding": c.non_embedding, "params_ffn": c.ffn,
            "reference_params": c.reference_total, "deviation": c.deviation,
            "ffn": cell.config.model.ffn, "params_active": c.active, "params_expert_ffn": c.expert_ffn,
            "memory_bytes": mem.total, "memory_basis": mem.basis, "fits": mem.fits(GPUS[gpu]) if gpu else None,
            "eval_share_planned": planned_eval_share(cell.config),
        })
    return rows


def main(args) -> int:
    from rich.table import Table

    from ..console import out
    from ..launch.memory import fmt_bytes, gpu_memory

    matrix, cells = cells_from(args)
    if args.gpu:
        gpu_memory(args.gpu)  # an unknown name is one line, before anything
    rows = plan_rows(cells, args.gpu)
    if args.json:
        print(json.dumps({"matrix": matrix.name, "cells": rows}, indent=2))
        return 0
    t = Table(title=f"{matrix.name}: {len(rows)} cells (dry run, nothing trained)", title_justify="left")
    moe = any(r["ffn"] == "moe" for r in rows)  # MoE: h is per expert; active = what one token uses
    mem_col = f"mem/dev (fits {args.gpu})" if args.gpu else "mem/dev"
    cols = ("id", "activation", "norm", "scale", "seed", "h", "params") + (("active", "per expert") if moe else ()) \
        + ("non-emb", "ffn", "vs ref", mem_col)
    for col in cols:
        t.add_column(col, justify="left" if col in ("id", "activation", "norm", "scale") else "right")
    for r in rows:
        extra = (f"{r['params_active']:,}", f"{r['params_expert_ffn']:,}" if r["ffn"] == "moe" else "-") if moe else ()
        fits = "" if r["fits"] is None else (" [green]yes[/]" if r["fits"] else " [red]NO[/]")
        t.add_row(r["id"], r["activation"], r["norm"], r["scale"], str(r["seed"]), str(r["intermediate_size"]),
                  f"{r['params']:,}", *extra, f"{r['params_non_embedding']:,}", f"{r['params_ffn']:,}",
                  f"{r['deviation']:+.4%}", fmt_bytes(r["memory_bytes"]) + fits)
    out.print(t)
    if any(r["memory_basis"] == "traced" for r in rows):
        out.print("mem/dev: estimated peak memory per device, traced from one training step of the real model "
                  "under fake tensors (weights, gradients, Adam states, the activation's own saved tensors at the "
                  "micro-batch), plus 1 GiB CUDA overhead (bench/launch/memory.py)")
    elif not args.gpu:
        out.print("mem/dev: the closed formula of bench/launch/memory.py (blind to the activation's own saved "
                  "tensors); add --gpu NAME for the traced estimate and whether it fits")
    else:
        out.print("mem/dev: the closed formula of bench/launch/memory.py (blind to the activation's own saved "
                  "tensors), plus 1 GiB CUDA overhead")
    out.print(validation_line(rows), highlight=False)
    return 0


def validation_line(rows: list[dict]) -> str:
    """The planned validation share of the cells' compute, a warning above WARN_SHARE."""
    from ..results.stats.costs import ADVICE, WARN_SHARE

    shares = [r["eval_share_planned"] for r in rows]
    lo, hi = min(shares), max(shares)
    span = f"{lo:.0%}" if f"{lo:.0%}" == f"{hi:.0%}" else f"{lo:.0%}-{hi:.0%}"
    line = (f"validation: {span} of each cell's compute, planned (the init pass, then every train.val_every steps "
            "and at the end, train.val_tokens per split, against 3x the training tokens)")
    if hi > WARN_SHARE:
        line = f"[yellow]warning:[/] {line}; above {WARN_SHARE:.0%}: {ADVICE}"
    return line
