"""`bench`: the command line. Each subcommand is one function; errors are one clear line."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from models import ACTIVATIONS, GATE_ACTS, NORMS, POSITIONS, SCHEME_DOCS, SCHEMES, UnknownName, count_params
from models.activations import describe

from .config import ConfigError, all_fields, recipes, scales
from .matrix import MATRIX_DIR, expand, load_matrix

console = Console()
err_console = Console(stderr=True)


def split_list(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def add_overrides(p: argparse.ArgumentParser) -> None:
    """One --section.field option per config field, its help from the field's docstring."""
    g = p.add_argument_group("config overrides (apply to every cell; see configs/ for presets)")
    for path, (typ, default, doc) in all_fields().items():
        if path in ("scale", "seed"):
            continue
        tname = getattr(typ, "__name__", str(typ).replace("typing.", ""))
        g.add_argument(f"--{path}", dest=f"set:{path}", metavar=tname.upper(), default=None,
                       help=f"{doc} [default: {default}]".replace("%", "%%"))


def overrides_from(args: argparse.Namespace) -> dict:
    return {k[4:]: v for k, v in vars(args).items() if k.startswith("set:") and v is not None}


def add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("matrix", nargs="?", default=None,
                   help=f"matrix name in {MATRIX_DIR.relative_to(MATRIX_DIR.parent.parent)}/ or a YAML path "
                        "[default: default]")
    p.add_argument("--scale", help="comma-separated scales; replaces the matrix's scale axis")
    p.add_argument("--activation", help="comma-separated activations; replaces the activation axis")
    p.add_argument("--norm", help="comma-separated schemes, '+gpas' to add GPAS (e.g. pre,pre+gpas)")
    p.add_argument("--seed", help="comma-separated seeds; replaces the seed axis")


def cells_from(args: argparse.Namespace):
    only = {k: split_list(getattr(args, k)) for k in ("scale", "activation", "norm", "seed")}
    only = {k: v for k, v in only.items() if v}
    if "seed" in only:
        only["seed"] = [int(s) for s in only["seed"]]
    return load_matrix(args.matrix), expand(load_matrix(args.matrix), overrides_from(args), only)


# ---- bench list --------------------------------------------------------------------------------

def registries() -> dict[str, dict[str, str]]:
    return {
        "activations": {n: ("gated: " if c.gated else "") + describe(c) for n, c in ACTIVATIONS.items()},
        "schemes": {n: SCHEME_DOCS[n] for n in SCHEMES},
        "norm_layers": {n: describe(c) for n, c in NORMS.items()},
        "gpas_gate_acts": dict(GATE_ACTS),
        "gpas_positions": dict(POSITIONS),
        "scales": {n: s.get("description", "") for n, s in scales().items()},
        "recipes": {n: r.get("description", "") for n, r in recipes().items()},
        "matrices": {p.stem: (load_matrix(str(p)).description) for p in sorted(MATRIX_DIR.glob("*.yaml"))},
    }


def cmd_list(args) -> int:
    regs = registries()
    if args.json:
        print(json.dumps(regs, indent=2))
        return 0
    for kind, entries in regs.items():
        t = Table(title=kind.replace("_", " "), title_justify="left", show_header=False, box=None)
        t.add_column(style="bold cyan", no_wrap=True)
        t.add_column()
        for name, doc in entries.items():
            t.add_row(name, doc)
        console.print(t)
        console.print()
    console.print("Schemes take a '+gpas' suffix (e.g. pre+gpas); post+gpas is a harness extension.")
    return 0


# ---- bench plan --------------------------------------------------------------------------------

def plan_rows(cells) -> list[dict]:
    rows = []
    for cell in cells:
        c = count_params(cell.config.model)
        rows.append({
            "id": cell.id, "activation": cell.config.model.activation, "norm": cell.config.norm,
            "scale": cell.config.scale, "seed": cell.config.seed, "intermediate_size": c.intermediate_size,
            "params": c.total, "params_non_embedding": c.non_embedding, "params_ffn": c.ffn,
            "reference_params": c.reference_total, "deviation": c.deviation,
        })
    return rows


def cmd_plan(args) -> int:
    matrix, cells = cells_from(args)
    rows = plan_rows(cells)
    if args.json:
        print(json.dumps({"matrix": matrix.name, "cells": rows}, indent=2))
        return 0
    t = Table(title=f"{matrix.name}: {len(rows)} cells (dry run, nothing trained)", title_justify="left")
    for col in ("id", "activation", "norm", "scale", "seed", "h", "params", "non-emb", "ffn", "vs ref"):
        t.add_column(col, justify="right" if col in ("h", "params", "non-emb", "ffn", "vs ref", "seed") else "left")
    for r in rows:
        t.add_row(r["id"], r["activation"], r["norm"], r["scale"], str(r["seed"]), str(r["intermediate_size"]),
                  f"{r['params']:,}", f"{r['params_non_embedding']:,}", f"{r['params_ffn']:,}",
                  f"{r['deviation']:+.4%}")
    console.print(t)
    return 0


# ---- entry point -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark FFN activations and normalization schemes for LLMs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="the registries: activations, schemes, scales, recipes, matrices")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("plan", help="dry run: every cell with its sizes and parameter counts",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_filters(p)
    p.add_argument("--json", action="store_true",
                   help='print {"cells": [{"id", "activation", "norm", "scale", "intermediate_size", '
                        '"params", "params_non_embedding", ...}]}')
    add_overrides(p)
    p.set_defaults(func=cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UnknownName) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
