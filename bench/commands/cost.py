"""`bench cost`: tokens/s, MFU and peak memory of each activation through its reference and fast
path; the measurement is bench.run.tools.cost's."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ConfigError
from .common import add_overrides, overrides_from, split_list

HELP = "benchmark: tokens/s, MFU and peak memory of each activation, reference vs fast path"


def add_parser(sub):
    from ..run.tools.cost import ACTIVATIONS, PATHS, SCALES

    p = sub.add_parser(
        "cost", help=HELP,
        description="Time a bare training loop (the harness's loss, optimizer, precision, compilation; random "
                    "tokens) for every scale x activation x kernels path and write the cost table to "
                    "<out>/<gpu|cpu>/<name>/cost.md and cost.json, with the device name and date.")
    p.add_argument("--scale", default=",".join(SCALES), help="comma-separated scale presets")
    p.add_argument("--activation", default=",".join(ACTIVATIONS), help="comma-separated activations")
    p.add_argument("--kernels", default=",".join(PATHS), help="comma-separated kernels paths (model.kernels)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per row")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation, allocator)")
    p.add_argument("--name", default="cost", help="table folder name under <out>/<gpu|cpu>/")
    p.add_argument("--out", default="results", help="results root")
    p.add_argument("--require-gpu", action="store_true", help="refuse to run without a CUDA device")
    add_overrides(p)
    return p


def main(args) -> int:
    import torch
    from rich.progress import Progress

    from models import ACTIVATIONS as REGISTERED, check_choice

    from ..console import out
    from ..run.config.presets import resolve
    from ..run.tools.cost import ACTIVATIONS, PATHS, SCALES, run_cost, to_markdown, write_table

    scales = split_list(args.scale) or list(SCALES)
    acts = split_list(args.activation) or list(ACTIVATIONS)
    paths = split_list(args.kernels) or list(PATHS)
    for a in acts:
        check_choice("activation", a, REGISTERED)
    for p in paths:
        check_choice("kernels path", p, PATHS)
    overrides = overrides_from(args)
    for s in scales:
        resolve({"recipe": "gpas", "scale": s, **overrides})  # every bad setting before any run
    if args.steps < 1 or args.warmup < 0:
        raise ConfigError(f"--steps must be >= 1 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.require_gpu and not torch.cuda.is_available():
        raise ConfigError("--require-gpu: no CUDA device here; CPU numbers are never written as GPU figures")
    with Progress(console=out, transient=True) as progress:
        task = progress.add_task("cost", total=len(scales) * len(acts) * len(paths))

        def step(desc):
            progress.update(task, description=desc)
            progress.advance(task)

        table = run_cost(scales, acts, paths, args.steps, args.warmup, overrides, step)
    table["command"] = "bench " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["cost"] else "bench cost"
    folder = write_table(table, Path(args.out), args.name)
    out.print(to_markdown(table), highlight=False)
    out.print(f"wrote {folder}/cost.md and cost.json ({table['device_kind']}: {table['device']})")
    for r in table["failed"]:
        out.print(f"[red]{r['scale']} {r['activation']} {r['kernels']}: {r['error']}[/]")
    return 0
