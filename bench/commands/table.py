"""`bench table`: the leaderboard of a matrix's results (rich, Markdown, CSV or LaTeX)."""

from __future__ import annotations

from .common import FORMATS, add_margin, add_target, report_problems, target_folder

HELP = "the leaderboard of a matrix's results"


def add_parser(sub):
    p = sub.add_parser("table", help=HELP)
    add_target(p, "--out")
    p.add_argument("--format", choices=FORMATS, default="rich",
                   help="output format: rich (terminal), md (Markdown), csv (the long table), latex (booktabs "
                        "tables for a paper: the same columns, CIs and marks, notes as footnotes; needs "
                        "\\usepackage{booktabs,graphicx})")
    p.add_argument("--baseline", default=None, metavar="ACT:NORM",
                   help="the cell group every other group is judged against (a verdict from the paired t-test on "
                        "per-seed final validation loss, Welch's for groups without shared seeds, Holm-corrected, "
                        "p < 0.05), e.g. swiglu:pre [default: first activation x first norm of each scale]")
    p.add_argument("--target-loss", type=float, default=None, metavar="X",
                   help="add the tokens and seconds until the validation loss first reaches X to the long table")
    p.add_argument("--at", default=None, metavar="AXIS=BUDGET",
                   help="rank the cells by validation loss at a matched budget: flops=X (training FLOPs), seconds=Y "
                        "(training seconds on the cell's device) or steps=Z, interpolated between validation points; "
                        "the axis alone (e.g. --at seconds) uses the largest budget every cell reached. The rankings "
                        "at equal steps / FLOPs / time are always shown when curves exist")
    add_margin(p)
    p.add_argument("--ladder", action="store_true",
                   help="the scaling laws of a `bench ladder` result: fits with intervals, crossovers (and --predict)")
    p.add_argument("--predict", type=float, default=None, metavar="N",
                   help="with --ladder: each group's predicted loss at N non-embedding parameters")
    return p


def main(args) -> int:
    from ..console import err, out
    from ..errors import ConfigError
    from ..results.records import load_records
    from ..results.tables import leaderboard as lb

    target = target_folder(args)
    records, problems = load_records(target)
    report_problems(problems)
    if not records:
        raise ConfigError(f"no finished cells under {target} (run `bench run` first)")
    title = target.name
    if args.ladder:
        if args.format == "latex":
            raise ConfigError("--ladder prints rich or md, not latex; use --format md")
        from ..results.tables.comparisons import law_tables, laws_markdown, print_laws
        from ..results.stats.laws import fit_laws

        tables = law_tables(fit_laws(records, args.predict))
        if args.format == "md":
            print(laws_markdown(tables), end="")
        else:
            print_laws(tables, out, title)
        return 0
    # the tables, built once (a malformed --baseline or --at fails before any output), then each format
    board = lb.folder_leaderboard(target, records, title, args.baseline, args.target_loss, args.at, args.margin)
    if args.format == "rich":
        lb.print_rich(board, out)
    else:
        print({"md": lb.to_markdown, "latex": lb.to_latex, "csv": lb.to_csv}[args.format](board), end="")
    try:
        lb.write_leaderboard(target, board, console=err)
    except OSError as e:  # a read-only or full results folder: the table above stands, unsaved
        err.print(f"[yellow]warning:[/] could not save leaderboard.md / leaderboard.csv in {target}: "
                  f"{e.strerror or e}; the table above is not saved", highlight=False, soft_wrap=True)
    return 0
