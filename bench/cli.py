"""`bench`: the command line. Each subcommand is one function; errors are one clear line."""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

from models import ACTIVATIONS, GATE_ACTS, NORMS, POSITIONS, SCHEMES, UnknownName, count_params

from .errors import Interrupted
from .run.config import ConfigError, all_fields, recipes, scales
from .run.matrix import MATRIX_DIR, expand, load_matrix

# Tables are wide: give logs and pipes (80 columns by default) room for a full leaderboard row.
console = Console(width=None if sys.stdout.isatty() else 160)
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
                   help=f"matrix name in {MATRIX_DIR.relative_to(MATRIX_DIR.parents[1])}/ or a YAML path "
                        "[default: default]")
    p.add_argument("--scale", help="comma-separated scales; replaces the matrix's scale axis")
    p.add_argument("--activation", help="comma-separated activations; replaces the activation axis")
    p.add_argument("--norm", help="comma-separated schemes, '+gpas' to add GPAS (e.g. pre,pre+gpas)")
    p.add_argument("--seed", help="comma-separated seeds; replaces the seed axis")


def cells_from(args: argparse.Namespace):
    only = {k: split_list(getattr(args, k)) for k in ("scale", "activation", "norm", "seed")}
    only = {k: v for k, v in only.items() if v}
    if "seed" in only:
        if not all(s.lstrip("-").isdigit() for s in only["seed"]):
            raise ConfigError(f"--seed takes comma-separated integers, got {args.seed!r}")
        only["seed"] = [int(s) for s in only["seed"]]
    overrides = overrides_from(args)
    if "," in str(overrides.get("model.ffn") or ""):  # --model.ffn moe,dense: an axis, not one value
        only["model.ffn"] = split_list(overrides.pop("model.ffn"))
    matrix = load_matrix(args.matrix)
    return matrix, expand(matrix, overrides, only)


# ---- bench list --------------------------------------------------------------------------------

def _doc(registry, name: str) -> str:
    """The one-line description; a plugin part says which module registered it."""
    part = registry.part(name)
    return part.doc if part.builtin else f"{part.doc} [plugin {part.source.rsplit('.', 1)[0]}]"


def registries() -> dict[str, dict[str, str]]:
    return {
        "activations": {n: ("gated: " if c.gated else "") + _doc(ACTIVATIONS, n) for n, c in ACTIVATIONS.items()},
        "schemes": {n: _doc(SCHEMES, n) for n in SCHEMES},
        "norm_layers": {n: _doc(NORMS, n) for n in NORMS},
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

def plan_rows(cells, gpu: str | None = None) -> list[dict]:
    from .launch.memory import GPUS, estimate

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


def cmd_plan(args) -> int:
    from .launch.memory import fmt_bytes, gpu_memory

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
    console.print(t)
    console.print("mem/dev: estimated peak memory per device (weights, gradients, Adam states, activations at "
                  "the micro-batch, 1 GiB CUDA overhead; formula in bench/launch/memory.py)")
    return 0


# ---- bench run / bench table -------------------------------------------------------------------

def report_problems(problems) -> None:
    """One line per record.json that could not be used: never dropped in silence."""
    for p in problems:
        err_console.print(f"[yellow]skipped record[/] {p.path}: {p.reason}", highlight=False, soft_wrap=True)


def cmd_run(args) -> int:
    from .launch.memory import warn_too_big
    from .run.ranks import is_rank_zero
    from .run.precision import check_device
    from .run.runner import run_matrix

    if args.devices_per_cell > 1 and args.workers != "1":  # part of each cell's config (and id)
        setattr(args, "set:train.devices", str(args.devices_per_cell))
    matrix, cells = cells_from(args)  # the whole matrix is validated before anything trains
    check_device(c.config for c in cells)  # e.g. fp8 on a machine without it: one line, nothing trained
    warn_too_big(cells, args.gpu, err_console)
    opts = run_options(args)
    if args.workers != "1":
        from .launch.workers import run_workers

        ran, unfinished = run_workers(matrix.name, cells, opts, args.argv, args.workers, args.devices_per_cell,
                                      cells[0].config.train.accelerator if cells else "auto", console)
        return max(finish_run(matrix.name, cells, ran, opts), 1 if unfinished else 0)
    if not is_rank_zero():  # another rank of a DDP/FSDP cell: train along, write and print nothing
        opts.quiet = True
        run_matrix(matrix.name, cells, opts, Console(quiet=True))
        return 0
    ran = run_matrix(matrix.name, cells, opts, console)
    return finish_run(matrix.name, cells, ran, opts)


def run_options(args):
    from pathlib import Path

    from .run.runner import RunOptions

    return RunOptions(out=Path(args.out), force=args.force, loggers=tuple(split_list(args.loggers) or ["csv"]),
                      quiet=args.quiet, ckpt_every=args.ckpt_every, keep_checkpoints=args.keep_checkpoints,
                      wait=getattr(args, "wait", False), stale_after=getattr(args, "stale_after", 300.0),
                      save_weights=getattr(args, "save_weights", False))


def finish_run(matrix_name: str, cells, ran, opts) -> int:
    """The leaderboard of the whole matrix folder, and the exit status of this run's cells."""
    from .results.leaderboard import render_rich, write_tables
    from .results.records import load_records

    folder = opts.out / matrix_name
    records, problems = load_records(folder)  # the whole matrix folder: a filtered run loses no rows
    ids = {c.id for c in cells}
    render_rich([r for r in records if r.id in ids] or ran, console, matrix_name)
    report_problems(p for p in problems if p.path.parent.name not in ids)
    for path in write_tables(folder, records, matrix_name, console=err_console):
        console.print(f"wrote {path}")
    done = {r.id for r in ran}
    skipped = sorted(ids - done)
    if skipped:
        err_console.print(f"[yellow]{len(skipped)} cell(s) left to the run training them:[/] {', '.join(skipped)}")
    bad = [r.id for r in ran if r.status != "ok"]
    if bad:
        err_console.print(f"[red]{len(bad)} cell(s) did not finish ok:[/] {', '.join(bad)}")
    return 1 if bad else 0


def cmd_table(args) -> int:
    from pathlib import Path

    from .results.leaderboard import render_rich, to_csv, to_markdown, write_tables
    from .results.records import load_records

    target = Path(args.target) if args.target and Path(args.target).is_dir() else Path(args.out) / (
        load_matrix(args.target).name)
    records, problems = load_records(target)
    report_problems(problems)
    if not records:
        raise ConfigError(f"no finished cells under {target} (run `bench run` first)")
    title = target.name
    from .results.stats import load_curves

    from .results.leaderboard import resolve_at

    at = resolve_at(args.at)  # a malformed --at fails before any output
    curves = load_curves(target)  # the equal steps / compute / time views read the validation curves
    if args.format == "md":
        print(to_markdown(records, title, args.baseline, args.target_loss, curves, at), end="")
    elif args.format == "csv":
        print(to_csv(records, args.target_loss, curves), end="")
    else:
        render_rich(records, console, title, args.baseline, args.target_loss, curves, at)
    write_tables(target, records, title, args.baseline, args.target_loss, console=err_console, at=at)
    return 0


# ---- bench overhead ----------------------------------------------------------------------------

def cmd_overhead(args) -> int:
    from .run.config import resolve
    from .run.matrix import Cell, cell_id
    from .run.overhead import measure

    settings = {"scale": args.scale or "micro", "activation": args.activation or "swiglu",
                "norm": args.norm or "pre", "train.max_steps": args.steps}
    cfg = resolve(settings, overrides_from(args))
    cell = Cell(cell_id(cfg, {}), cfg, ())
    console.print(f"timing {cell.id}: {args.repeats} x (bare loop, harness), {args.steps} steps each, "
                  f"first {cfg.train.throughput_warmup} excluded, compile={cfg.train.compile}, kernels={cfg.model.kernels}")
    r = measure(cell, args.repeats)
    t = Table(title="harness overhead (steady-state tokens/s; ratio = harness step time / bare step time)",
              title_justify="left")
    for col in ("loop", "runs (tok/s)", "median tok/s"):
        t.add_column(col)
    t.add_row("bare PyTorch", ", ".join(f"{v:,.0f}" for v in r["bare_tokens_per_sec"]), f"{r['bare_median']:,.0f}")
    t.add_row("harness", ", ".join(f"{v:,.0f}" for v in r["harness_tokens_per_sec"]), f"{r['harness_median']:,.0f}")
    console.print(t)
    console.print(f"step-time ratio harness/bare: [bold]{r['step_time_ratio']:.3f}[/] (target <= 1.05)")
    if args.json:
        print(json.dumps(r))
    return 0


# ---- entry point -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark FFN activations and normalization schemes for LLMs.")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE (a dotted name or a .py path) first: it registers its own activations, "
                             "schemes, norms or probes (repeatable; see docs/plugins.md). Installed packages' "
                             "'llm_arch_bench.plugins' entry points and $BENCH_PLUGINS are loaded too")
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
    from .launch.memory import add_gpu_arg

    add_gpu_arg(p)
    add_overrides(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("run", help="train every cell of a matrix and print the leaderboard",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_filters(p)
    p.add_argument("--out", default="results", help="results folder: writes OUT/<matrix>/<cell id>/")
    p.add_argument("--force", action="store_true", help="retrain cells that already have a finished record")
    p.add_argument("--loggers", default="csv", help="comma-separated Lightning loggers: csv, tensorboard, wandb")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--ckpt-every", type=int, default=100,
                   help="save a resumable checkpoint every N optimizer steps (0 = never); a killed cell "
                        "resumes from it on the next run")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep a finished cell's last checkpoint")
    p.add_argument("--save-weights", action="store_true",
                   help="keep every cell that finishes ok as OUT/<matrix>/<cell id>/weights/ (model.safetensors, "
                        "config.json, tokenizer); load with models.load_weights or bench.results.weights.load_cell; "
                        "needed by `bench eval`")
    p.add_argument("--wait", action="store_true",
                   help="wait for cells another run is training (claimed in their folder) instead of skipping them")
    p.add_argument("--stale-after", type=float, default=300.0, metavar="SECONDS",
                   help="take over a cell whose claim's heartbeat is older than this (its holder died; on the "
                        "same host a dead pid is noticed at once)")
    add_gpu_arg(p)
    from .launch.workers import add_worker_args

    add_worker_args(p)
    add_overrides(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("table", help="the leaderboard of a matrix's results",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("target", nargs="?", default=None, help="a matrix name/YAML or a results folder [default: default]")
    p.add_argument("--out", default="results", help="results folder a matrix name is looked up in")
    p.add_argument("--format", choices=("rich", "md", "csv"), default="rich", help="output format")
    p.add_argument("--baseline", default=None, metavar="ACT:NORM",
                   help="the cell group every other group is tested against (paired t-test on per-seed final "
                        "validation loss, Welch's for groups without shared seeds, Holm-corrected, p < 0.05), e.g. "
                        "swiglu:pre [default: first activation x first norm of each scale]")
    p.add_argument("--target-loss", type=float, default=None, metavar="X",
                   help="add the tokens and seconds until the validation loss first reaches X to the long table")
    p.add_argument("--at", default=None, metavar="AXIS=BUDGET",
                   help="rank the cells by validation loss at a matched budget: flops=X (training FLOPs), seconds=Y "
                        "(training seconds on the cell's device) or steps=Z, interpolated between validation points; "
                        "the axis alone (e.g. --at seconds) uses the largest budget every cell reached. The rankings "
                        "at equal steps / FLOPs / time are always shown when curves exist")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("overhead", help="benchmark: harness vs a bare PyTorch loop, same model/data/steps",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", default="micro", help="scale preset")
    p.add_argument("--activation", default="swiglu", help="activation")
    p.add_argument("--norm", default="pre", help="scheme, optionally +gpas")
    p.add_argument("--steps", type=int, default=150, help="steps per run (the first train.throughput_warmup excluded)")
    p.add_argument("--repeats", type=int, default=3, help="alternating (bare, harness) pairs; medians are compared")
    p.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    add_overrides(p)
    p.set_defaults(func=cmd_overhead)

    from .data.cli import add_data_parser
    from .run.check import add_check_parser
    from .run.sweep import add_sweep_parser
    from .results.eval import add_eval_parser
    from .run.cost import add_cost_parser
    from .results.report import add_report_parser

    add_sweep_parser(sub)
    add_data_parser(sub)
    add_report_parser(sub)
    add_eval_parser(sub)
    add_check_parser(sub)
    add_cost_parser(sub)
    from .launch.slurm import add_submit_parser
    from .launch.status import add_status_parser

    add_submit_parser(sub, add_filters, add_overrides)
    add_status_parser(sub, add_filters, add_overrides)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # --workers children rerun it
    try:
        from .plugins import export_env, load_entry_points, load_env, load_plugins

        load_entry_points()  # before any matrix or name is checked: plugins add names
        load_env()
        load_plugins(args.plugin, "flag")
        export_env(args.plugin)  # worker processes started from here load them too
        return args.func(args)
    except (ConfigError, UnknownName) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except Interrupted as e:  # the cell was saved and recorded as `interrupted`
        err_console.print(f"[bold yellow]stopped:[/] {e}", highlight=False, soft_wrap=True)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
