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
    p.add_argument("--repeats", type=int, default=3,
                   help="pairs of a bare and a harness run, in ABBA order; a verdict needs at least 2 "
                        "(on a shared machine, more pairs of fewer --steps carry more)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch's CPU threads for both loops, when set (torch's own otherwise: one per core); one "
                        "fewer than the cores leaves one to Python and the OS, and halved the pairs' spread on a "
                        "2-core machine")
    p.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    add_overrides(p)
    return p


def main(args) -> int:
    from rich.table import Table

    from ..console import out
    from ..errors import ConfigError
    from ..run.config.presets import resolve
    from ..run.config.matrix import Cell, cell_id
    from ..run.tools.overhead import measure

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, not {args.threads}")
    settings = {"scale": args.scale or "micro", "activation": args.activation or "swiglu",
                "norm": args.norm or "pre", "train.max_steps": args.steps}
    cfg = resolve(settings, overrides_from(args))
    cell = Cell(cell_id(cfg, {}), cfg, ())
    out.print(f"timing {cell.id}: {args.repeats} pairs (bare loop, harness; ABBA order), {args.steps} steps each, "
              f"first {cfg.train.throughput_warmup} excluded, compile={cfg.train.compile}, "
              f"kernels={cfg.model.kernels}, threads={args.threads or 'default'}")
    r = measure(cell, args.repeats, args.threads)
    t = Table(title="harness overhead (steady-state tokens/s; ratio = harness step time / bare step time)",
              title_justify="left")
    for col in ("loop", "runs (tok/s)", "median tok/s"):
        t.add_column(col)
    t.add_row("bare PyTorch", ", ".join(f"{v:,.0f}" for v in r["bare_tokens_per_sec"]), f"{r['bare_median']:,.0f}")
    t.add_row("harness", ", ".join(f"{v:,.0f}" for v in r["harness_tokens_per_sec"]), f"{r['harness_median']:,.0f}")
    out.print(t)
    out.print(verdict_line(r), highlight=False)
    if args.json:
        print(json.dumps(r))
    return 0


def verdict_line(r: dict) -> str:
    """The ratio, the pairs' interval, what it says about the target, and the runs' noise."""
    from ..run.tools.overhead import TARGET

    ci = r["pair_interval"]
    pairs = (f"pairs' geometric mean {ci[0]:.3f}, 95% CI {ci[1]:.3f}-{ci[2]:.3f}" if ci else
             "one pair: no interval")
    line = (f"step-time ratio harness/bare: [bold]{r['step_time_ratio']:.3f}[/] (ratio of the medians; {pairs}; "
            f"the harness adds {r['added_ms_per_step']:.2f} ms a step; bare runs spread {r['bare_spread']:.0%}; "
            f"{r['threads']} CPU threads); target <= {TARGET}: ")
    if r["verdict"] == "met":
        return line + "[green]met[/] (the interval lies under it)"
    if r["verdict"] == "missed":
        return line + "[red]missed[/] (the interval lies above it)"
    return line + ("[yellow]inconclusive[/]: the interval spans the target, as this machine's noise is wider than "
                   "the margin: rerun idle, with more pairs (--repeats 32 --steps 50), or on a CPU with --threads "
                   "one fewer than its cores")
