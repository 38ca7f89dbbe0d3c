"""`bench submit`: a matrix's unfinished cells as one SLURM job array; the tasks are
bench.launch.slurm's."""

from __future__ import annotations

from pathlib import Path

from .common import add_filters, add_gpu_arg, add_name, add_out, add_overrides, add_progress_every, cells_from, \
    run_name, set_override, split_list

HELP = "submit a matrix's unfinished cells to SLURM as a job array (submitit)"


def add_parser(sub):
    p = sub.add_parser("submit", help=HELP)
    add_filters(p)
    add_out(p, "results folder (on a filesystem the compute nodes share)")
    add_name(p)
    p.add_argument("--partition", default=None, help="SLURM partition [default: the cluster's default]")
    p.add_argument("--gpus-per-cell", type=int, default=0, metavar="K",
                   help="GPUs per array task (sets --train.devices K when K > 1: a DDP/FSDP cell)")
    p.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per array task")
    p.add_argument("--mem", default=None, help="memory per task, e.g. 64G")
    p.add_argument("--time", type=int, default=60, metavar="MINUTES",
                   help="time limit per task; a task that reaches it is requeued and resumes")
    p.add_argument("--array-parallelism", type=int, default=256, metavar="M", help="at most M tasks at once")
    p.add_argument("--signal-delay", type=int, default=90, metavar="S",
                   help="seconds before the time limit at which the task checkpoints and requeues")
    p.add_argument("--ckpt-every", type=int, default=100, help="resumable checkpoint every N optimizer steps")
    p.add_argument("--loggers", default="csv", help="comma-separated Lightning loggers")
    p.add_argument("--stale-after", type=float, default=300.0, metavar="SECONDS",
                   help="take over a cell whose claim's heartbeat is older than this (its holder died)")
    add_progress_every(p)  # the lines go to each task's log
    p.add_argument("--dry-run", action="store_true", help="list what would be submitted, submit nothing")
    add_gpu_arg(p)
    add_overrides(p)
    return p


def main(args) -> int:
    from ..console import err, out
    from ..launch.memory import warn_too_big
    from ..launch.slurm import submit, unsubmitted
    from ..run.engine.runner import RunOptions

    if args.gpus_per_cell > 1:
        set_override(args, "train.devices", str(args.gpus_per_cell))
    matrix, cells = cells_from(args)
    name = run_name(args, matrix)
    warn_too_big(cells, args.gpu, err)
    opts = RunOptions(out=Path(args.out).absolute(), loggers=tuple(split_list(args.loggers) or ["csv"]), quiet=True,
                      ckpt_every=args.ckpt_every, stale_after=args.stale_after, progress_every=args.progress_every)
    todo = unsubmitted(opts.out, name, cells)
    out.print(f"{name}: {len(todo)} cell(s) to submit, {len(cells) - len(todo)} done or running")
    if not todo or args.dry_run:
        for c in todo:
            out.print(f"  {c.id}")
        return 0
    resources = dict(time=args.time, array_parallelism=args.array_parallelism, signal_delay_s=args.signal_delay,
                     partition=args.partition, gpus_per_cell=args.gpus_per_cell, cpus_per_task=args.cpus_per_task,
                     mem=args.mem)
    jobs, log_dir = submit(name, todo, opts, args.argv, resources)
    out.print(f"submitted array {jobs[0].job_id.split('_')[0]} ({len(jobs)} task(s)); `bench status` with "
              f"the same arguments follows it; task logs in {log_dir}", highlight=False)
    return 0
