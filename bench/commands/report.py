"""`bench report`: one self-contained HTML page per matrix folder; the page is bench.results.report's."""

from __future__ import annotations

from pathlib import Path

from .common import add_margin, add_target, target_folder

HELP = "write a self-contained HTML report (tables, curves, frontier, probes, scaling, provenance)"


def add_parser(sub):
    p = sub.add_parser(
        "report", help=HELP,
        description="Write one self-contained HTML page per matrix: the leaderboard with 95% confidence "
                    "intervals over seeds and paired statistics against a baseline cell (paired t-test on per-seed "
                    "differences, Welch's for unpaired groups, Holm-corrected, effect sizes, seed noise) with a "
                    "verdict per comparison (better, worse, equivalent within --margin, or undecided with what would "
                    "decide it), the rankings at equal steps / FLOPs / time and where they disagree, LR robustness "
                    "(for `bench sweep` results), comparison figures (activation variance by scheme, GPAS gates, "
                    "effective rank, layer cosine, loss with seed bands), loss curves, the validation PPL vs "
                    "tokens/s frontier, per-cell probes (collapsed), scaling fits (when several scales are "
                    "present) and provenance. Figures are embedded PNGs: the page needs no network.")
    add_target(p, "--results")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="the HTML file to write; only when the target holds one matrix "
                        "[default: <matrix folder>/report.html]")
    p.add_argument("--baseline", default=None, metavar="ACT:NORM",
                   help="the cell group every other group is tested against, e.g. swiglu:pre "
                        "[default: the first activation x the first norm of each scale]")
    p.add_argument("--target-loss", type=float, default=None, metavar="X",
                   help="add the tokens and seconds until the validation loss first reaches X to the cell table "
                        "[default: none]")
    add_margin(p)
    p.add_argument("--at", default=None, metavar="AXIS=BUDGET",
                   help="the budget of one view: flops=X, seconds=Y or steps=Z [default: per scale, the largest "
                        "budget every cell reached]")
    return p


def main(args) -> int:
    from ..errors import ConfigError, need
    from ..results.tables.leaderboard import check_margin, resolve_at, resolve_baseline
    from ..results.report import write_report

    need("jinja2", "bench report")  # the page's template
    need("matplotlib", "bench report")  # its figures

    folder = target_folder(args)
    resolve_baseline(args.baseline)  # malformed values fail before any work
    check_margin(args.margin)
    at = resolve_at(args.at)
    try:
        written = write_report(folder, Path(args.out) if args.out else None, args.baseline, args.target_loss, at=at,
                               margin=args.margin)
    except OSError as e:  # a read-only or full results folder
        raise ConfigError(f"cannot write the report under {folder}: {e.strerror or e}"
                          + ("" if args.out else "; write it elsewhere with --out FILE")) from None
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")
    return 0
