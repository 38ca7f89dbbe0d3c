"""`bench check`: the CI regression check (bench.run.tools.check): every activation x scheme at nano scale
against the committed baseline. Exit 0 on pass, 1 on any regression, new or missing cell."""

from __future__ import annotations

import argparse

HELP = "CI regression check: every activation x scheme at nano scale vs the committed baseline"


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def main(args: argparse.Namespace) -> int:
    from ..run.tools.check.run import CheckOptions, run_check  # torch: only when the check runs

    return run_check(CheckOptions(
        activations=_names(args.activation), norms=_names(args.norm), ffns=_names(args.ffn), baseline=args.baseline,
        update=args.update, calibrate=args.calibrate, untrained=args.untrained, steps=args.steps, jobs=args.jobs,
        verbose=args.verbose, quiet=args.quiet))


def add_parser(sub) -> argparse.ArgumentParser:
    """The `check` subcommand on the CLI's subparsers."""
    from ..run.tools.check.cells import DEFAULT_STEPS, MOE_ACTIVATIONS, MOE_NORMS, MOE_SCALE
    from ..run.tools.check.train import default_jobs

    p = sub.add_parser(
        "check", help=HELP,
        description="Train every activation x scheme (with and without GPAS) at the nano scale on CPU for a few "
                    "dozen steps on fixed text, single-threaded and seeded, and compare parameter counts (exactly) "
                    "and losses (within the baseline's tolerances) with the baseline. Exit 0 on pass, 1 on any "
                    "regression, new or missing cell. See docs/check.md.")
    p.add_argument("--baseline", metavar="FILE", default=None,
                   help="baseline JSON file to compare with (or write, with --update) "
                        "[default: configs/baselines/check-nano.json]")
    p.add_argument("--update", action="store_true",
                   help="rewrite the baseline with this run's numbers (atomically) and exit 0; with "
                        "--activation/--norm only those cells are replaced, the rest kept")
    p.add_argument("--calibrate", action="store_true",
                   help="derive the tolerances from the spread across the environments this machine can emulate "
                        "(other CPU kernel sets, 2 threads per cell: about 4 full checks) and store them, with "
                        "the method, in the baseline; the cells stay as they are unless --update")
    p.add_argument("--untrained", action="store_true",
                   help="check only the untrained numbers (parameter counts, loss and gradient norm at init and at "
                        "the perturbed init): pure math, no training, seconds for the whole matrix")
    p.add_argument("--activation", help="comma-separated activations to check [default: all of models.ACTIVATIONS]")
    p.add_argument("--norm", help="comma-separated schemes, '+gpas' to add GPAS (e.g. pre,pre+gpas) "
                                  "[default: every scheme with and without GPAS]")
    p.add_argument("--ffn", help="comma-separated FFN kinds to check: dense (every activation x scheme at nano), "
                                 f"moe ({', '.join(MOE_ACTIVATIONS)} x {', '.join(MOE_NORMS)} at {MOE_SCALE}) "
                                 "[default: both]")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps per cell; must match the baseline's unless --update "
                        f"[default: the baseline's, else {DEFAULT_STEPS}]")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="worker processes, one thread each (the numbers do not depend on it) "
                        "[default: the usable CPU cores, at most 8; here %(default)s]")
    p.add_argument("--verbose", action="store_true", help="show every cell, not only regressions and new/missing ones")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)
    return p
