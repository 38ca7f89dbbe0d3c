"""`bench table`: the leaderboard of a matrix's results (rich, Markdown, CSV or LaTeX)."""

from __future__ import annotations

from .common import add_target, report_problems, target_folder

HELP = "the leaderboard of a matrix's results"
FORMATS = ("rich", "md", "csv", "latex")


def add_parser(sub):
    p = sub.add_parser("table", help=HELP)
    add_target(p, "--out")
    p.add_argument("--format", choices=FORMATS, default="rich",
                   help="output format: rich (terminal), md (Markdown), csv (the long table), latex (booktabs "
                        "tables for a paper: the same columns, CIs and marks, notes as footnotes; needs "
                        "\\usepackage{booktabs,graphicx})")
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
    p.add_argument("--ladder", action="store_true",
                   help="the scaling laws of a `bench ladder` result: fits with intervals, crossovers (and --predict)")
    p.add_argument("--predict", type=float, default=None, metavar="N",
                   help="with --ladder: each group's predicted loss at N non-embedding parameters")
    return p


def main(args) -> int:
    from ..console import err, out
    from ..errors import ConfigError
    from ..results.leaderboard import render_rich, resolve_at, to_csv, to_markdown, write_tables
    from ..results.records import load_records
    from ..results.stats import load_curves

    target = target_folder(args)
    records, problems = load_records(target)
    report_problems(problems)
    if not records:
        raise ConfigError(f"no finished cells under {target} (run `bench run` first)")
    title = target.name
    if args.ladder:
        if args.format == "latex":
            raise ConfigError("--ladder prints rich or md, not latex; use --format md")
        from ..results.ladder import ladder_view, render_rich as render_ladder, to_markdown as ladder_markdown

        view = ladder_view(records, args.predict)
        if args.format == "md":
            print(ladder_markdown(view), end="")
        else:
            render_ladder(view, out)
        return 0
    at = resolve_at(args.at)  # a malformed --at fails before any output
    curves = load_curves(target)  # the equal steps / compute / time views read the validation curves
    if args.format == "md":
        print(to_markdown(records, title, args.baseline, args.target_loss, curves, at), end="")
    elif args.format == "latex":
        from ..results.latex import to_latex

        print(to_latex(records, title, args.baseline, args.target_loss, curves, at), end="")
    elif args.format == "csv":
        print(to_csv(records, args.target_loss, curves), end="")
    else:
        render_rich(records, out, title, args.baseline, args.target_loss, curves, at)
    try:
        write_tables(target, records, title, args.baseline, args.target_loss, console=err, at=at)
    except OSError as e:  # a read-only or full results folder: the table above stands, unsaved
        err.print(f"[yellow]warning:[/] could not save leaderboard.md / leaderboard.csv in {target}: "
                  f"{e.strerror or e}; the table above is not saved", highlight=False, soft_wrap=True)
    return 0
