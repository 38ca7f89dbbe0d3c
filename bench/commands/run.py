"""`bench run`: train every cell of a matrix (resumable, claimed per cell) and print the leaderboard."""

from __future__ import annotations

from .common import add_filters, add_gpu_arg, add_overrides, add_run_options, cells_from, report_problems, \
    run_name, run_options, set_override

HELP = "train every cell of a matrix and print the leaderboard"


def add_parser(sub):
    p = sub.add_parser("run", help=HELP)
    add_filters(p)
    add_run_options(p)
    add_gpu_arg(p)
    p.add_argument("--workers", default="1", metavar="N|auto",
                   help="train N cells at once, each in its own process pinned to --devices-per-cell GPUs "
                        "(CPU: to its share of the cores); auto = one per visible GPU, or one per core on CPU")
    p.add_argument("--devices-per-cell", type=int, default=1, metavar="K",
                   help="GPUs per cell under --workers (sets --train.devices K: a DDP/FSDP cell)")
    add_overrides(p)
    return p


def main(args) -> int:
    from ..console import out
    from ..launch.memory import warn_too_big
    from ..run.engine.ranks import is_rank_zero
    from ..run.config.precision import check_device
    from ..run.engine.cell import run_matrix

    if args.devices_per_cell > 1 and args.workers != "1":  # part of each cell's config (and id)
        set_override(args, "train.devices", str(args.devices_per_cell))
    opts = run_options(args)  # a bad --out is one line before the matrix is expanded
    matrix, cells = cells_from(args)  # the whole matrix is validated before anything trains
    name = run_name(args, matrix)
    check_device(c.config for c in cells)  # e.g. fp8 on a machine without it: one line, nothing trained
    from ..console import err

    warn_too_big(cells, args.gpu, err)
    if args.workers != "1":
        from ..launch.workers import run_workers, strip_worker_args

        ran, unfinished = run_workers(name, cells, opts, strip_worker_args(args.argv), args.workers,
                                      args.devices_per_cell,
                                      cells[0].config.train.accelerator if cells else "auto", out)
        return max(finish_run(name, cells, ran, opts), 1 if unfinished else 0)
    if not is_rank_zero():  # another rank of a DDP/FSDP cell: train along, write and print nothing
        from rich.console import Console

        opts.quiet = True
        run_matrix(name, cells, opts, Console(quiet=True))
        return 0
    ran = run_matrix(name, cells, opts, out)
    return finish_run(name, cells, ran, opts)


def finish_run(matrix_name: str, cells, ran, opts) -> int:
    """The leaderboard of the whole matrix folder, and the exit status of this run's cells."""
    from ..atomic import remove_old_temps
    from ..console import err, out
    from ..results.leaderboard import render_rich, write_tables
    from ..results.records import load_records

    folder = opts.out / matrix_name
    remove_old_temps(folder)  # left by a table or report write that was killed
    records, problems = load_records(folder)  # the whole matrix folder: a filtered run loses no rows
    ids = {c.id for c in cells}
    render_rich([r for r in records if r.id in ids] or ran, out, matrix_name)
    report_problems(p for p in problems if p.path.parent.name not in ids)
    try:
        for path in write_tables(folder, records, matrix_name, console=err):
            out.print(f"wrote {path}")
    except OSError as e:  # the records are safe; only the leaderboard files are not written
        err.print(f"[yellow]warning:[/] could not write the leaderboard in {folder}: {e.strerror or e}; "
                  "`bench table` writes it later", highlight=False, soft_wrap=True)
    done = {r.id for r in ran}
    skipped = sorted(ids - done)
    if skipped:
        err.print(f"[yellow]{len(skipped)} cell(s) left to the run training them:[/] {', '.join(skipped)}")
    bad = [r.id for r in ran if r.status != "ok"]
    if bad:
        err.print(f"[red]{len(bad)} cell(s) did not finish ok:[/] {', '.join(bad)}")
    return 1 if bad else 0
