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

    from ..launch.memory import GPUS, estimate

    rows = []
    for cell in cells:
        c = count_params(cell.config.model)
        mem = estimate(cell.config, flash=gpu is not None or cell.config.train.accelerator == "gpu")
        rows.append({
            "id": cell.id, "activation": cell.config.model.activation, "norm": cell.config.norm,
            "scale": cell.config.scale, "seed": cell.config.seed, "intermediate_size": c.intermediate_size,
            "params": c.total, "params_non_embedding": c.non_embedding, "params_ffn": c.ffn,
            "reference_params": c.reference_total, "deviation": c.deviation,
            "ffn": cell.config.model.ffn, "params_active": c.active, "params_expert_ffn": c.expert_ffn,
            "memory_bytes": mem.total, "fits": mem.fits(GPUS[gpu]) if gpu else None,
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
    out.print("mem/dev: estimated peak memory per device (weights, gradients, Adam states, activations at "
              "the micro-batch, 1 GiB CUDA overhead; formula in bench/launch/memory.py)")
    return 0
