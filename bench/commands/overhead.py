"""`bench overhead`: the harness's steady-state step time against a bare PyTorch loop."""

from __future__ import annotations

import json

from .common import add_overrides, overrides_from

HELP = "benchmark: harness vs a bare PyTorch loop, same model/data/steps"


def add_parser(sub):
    p = sub.add_parser("overhead", help=HELP)
    p.add_argument("--scale", default="micro", help="scale preset")
    p.add_argument("--activation", default="swiglu", help="activation")
    p.add_argument("--norm", default="pre", help="scheme, optionally +gpas")
    p.add_argument("--steps", type=int, default=150, help="steps per run (the first train.throughput_warmup excluded)")
    p.add_argument("--repeats", type=int, default=3, help="alternating (bare, harness) pairs; medians are compared")
    p.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    add_overrides(p)
    return p


def main(args) -> int:
    from rich.table import Table

    from ..console import out
    from ..run.config import resolve
    from ..run.matrix import Cell, cell_id
    from ..run.overhead import measure

    settings = {"scale": args.scale or "micro", "activation": args.activation or "swiglu",
                "norm": args.norm or "pre", "train.max_steps": args.steps}
    cfg = resolve(settings, overrides_from(args))
    cell = Cell(cell_id(cfg, {}), cfg, ())
    out.print(f"timing {cell.id}: {args.repeats} x (bare loop, harness), {args.steps} steps each, "
              f"first {cfg.train.throughput_warmup} excluded, compile={cfg.train.compile}, kernels={cfg.model.kernels}")
    r = measure(cell, args.repeats)
    t = Table(title="harness overhead (steady-state tokens/s; ratio = harness step time / bare step time)",
              title_justify="left")
    for col in ("loop", "runs (tok/s)", "median tok/s"):
        t.add_column(col)
    t.add_row("bare PyTorch", ", ".join(f"{v:,.0f}" for v in r["bare_tokens_per_sec"]), f"{r['bare_median']:,.0f}")
    t.add_row("harness", ", ".join(f"{v:,.0f}" for v in r["harness_tokens_per_sec"]), f"{r['harness_median']:,.0f}")
    out.print(t)
    out.print(f"step-time ratio harness/bare: [bold]{r['step_time_ratio']:.3f}[/] (target <= 1.05)")
    if args.json:
        print(json.dumps(r))
    return 0
