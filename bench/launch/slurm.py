"""`bench submit`: a matrix's unfinished cells as one SLURM job array, through submitit.

One array task per cell. A cell is the unit that is claimed, checkpointed, requeued and timed, so
one task per cell makes SLURM's own accounting (time limit, requeue count, state) that of the
cell, lets the scheduler backfill cells independently, and makes a preemption cost one cell.
Packing tiny cells into one task would save only the task start-up (seconds; nano cells are the
only ones that short), at the price of a time limit that must cover the whole pack.

Each task is a ``CellTask`` (a submitit Checkpointable): it imports this checkout (PYTHONPATH and
cwd are set to the repository root, the python is this venv's) and runs the same
"claim, train, record, release" path as `bench run` (job.run_cells) on its cell, writing into the
same results tree, so `bench table` and `bench report` read SLURM results unchanged. On a timeout
or preemption submitit calls ``checkpoint``: the task releases its claim and is requeued; the
requeued task resumes the cell from its last checkpoint (OUT/<matrix>/<cell>/checkpoints/).
Job ids are saved in OUT/<matrix>/.slurm/jobs.json for `bench status`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from ..errors import ConfigError
from ..results.records import cell_dir
from ..run import cell as job
from ..run.claims import holder
from ..run.cell import finished, record_of

ROOT = Path(__file__).resolve().parents[2]


class CellTask:
    """One array task: train one cell (by id) of the matrix that ``argv`` (a `bench run` command
    line) describes. Callable and checkpointable, as submitit wants."""

    def __init__(self, argv: list[str], cell_id: str, root: str = str(ROOT)):
        self.argv, self.cell_id, self.root = list(argv), cell_id, root

    def __call__(self) -> str:
        os.chdir(self.root)
        if self.root not in sys.path:
            sys.path.insert(0, self.root)
        os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
        from ..cli import build_parser, cells_from, run_options

        args = build_parser().parse_args(self.argv)
        from ..plugins import load_entry_points, load_env

        load_entry_points()  # the plugins the launching command loaded (exported in the environment)
        load_env()
        matrix, cells = cells_from(args)
        opts = run_options(args)
        opts.quiet = True
        cells = [c for c in cells if c.id == self.cell_id]
        if not cells:
            raise RuntimeError(f"cell {self.cell_id} is not in matrix {matrix.name} any more")
        done = job.run_cells(matrix.name, cells, opts, log=lambda m: print(m, flush=True))
        rec = done[0] if done else record_of(cell_dir(opts.out, matrix.name, self.cell_id))
        status = rec.status if rec is not None else "skipped (claimed by a live holder)"
        print(f"{self.cell_id}: {status}", flush=True)
        if status not in ("ok", "diverged") and not status.startswith("skipped"):
            raise RuntimeError(f"{self.cell_id} ended {status}: {rec.error if rec is not None else ''}")
        return status

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on timeout/preemption: let go of the claim, requeue this same task
        (the cell's own Lightning checkpoint is what it resumes from)."""
        import submitit

        job.release_held()
        return submitit.helpers.DelayedSubmission(CellTask(self.argv, self.cell_id, self.root))


def add_submit_parser(sub, add_filters, add_overrides) -> None:
    p = sub.add_parser("submit", help="submit a matrix's unfinished cells to SLURM as a job array (submitit)")
    add_filters(p)
    p.add_argument("--out", default="results", help="results folder (on a filesystem the compute nodes share)")
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
    p.add_argument("--dry-run", action="store_true", help="list what would be submitted, submit nothing")
    from .memory import add_gpu_arg

    add_gpu_arg(p)
    add_overrides(p)
    p.set_defaults(func=cmd_submit)


def task_argv(args) -> list[str]:
    """The `bench run` command line each task rebuilds its cell from."""
    from ..cli import overrides_from

    argv = ["run"] + ([args.matrix] if args.matrix else []) + ["--out", str(Path(args.out).resolve()),
                                                               "--ckpt-every", str(args.ckpt_every),
                                                               "--loggers", args.loggers]
    for k in ("scale", "activation", "norm", "seed"):
        if getattr(args, k):
            argv += [f"--{k}", str(getattr(args, k))]
    for k, v in overrides_from(args).items():
        argv += [f"--{k}", str(v)]
    return argv


def jobs_file(out: Path, matrix_name: str) -> Path:
    return Path(out) / matrix_name / ".slurm" / "jobs.json"


def load_jobs(out: Path, matrix_name: str) -> dict[str, str]:
    """cell id -> the latest SLURM job id submitted for it."""
    try:
        return json.loads(jobs_file(out, matrix_name).read_text())
    except (OSError, ValueError):
        return {}


def cmd_submit(args) -> int:
    from ..cli import cells_from, console, err_console
    from .memory import warn_too_big

    if args.gpus_per_cell > 1:
        setattr(args, "set:train.devices", str(args.gpus_per_cell))
    matrix, cells = cells_from(args)
    warn_too_big(cells, args.gpu, err_console)
    out = Path(args.out)
    todo = []
    for c in cells:
        folder = cell_dir(out, matrix.name, c.id)
        claim = holder(folder)
        if finished(record_of(folder)) or (claim is not None and not claim.is_stale()):
            continue
        todo.append(c)
    console.print(f"{matrix.name}: {len(todo)} cell(s) to submit, {len(cells) - len(todo)} done or running")
    if not todo or args.dry_run:
        for c in todo:
            console.print(f"  {c.id}")
        return 0
    if shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found: `bench submit` needs a SLURM cluster (or run .ci/slurm-up.sh)")
    import submitit

    log_dir = out / matrix.name / ".slurm" / "%j"
    executor = submitit.SlurmExecutor(folder=log_dir, python=sys.executable)
    params = dict(time=args.time, array_parallelism=args.array_parallelism, signal_delay_s=args.signal_delay,
                  job_name=f"bench-{matrix.name}", stderr_to_stdout=True,
                  setup=[f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}", f"cd {ROOT}",
                         "export LITDATA_DISABLE_VERSION_CHECK=1"])
    if args.partition:
        params["partition"] = args.partition
    if args.gpus_per_cell:  # one srun task per GPU: Lightning's SLURM environment sees its ranks
        params.update(gpus_per_node=args.gpus_per_cell, ntasks_per_node=args.gpus_per_cell)
    if args.cpus_per_task:
        params["cpus_per_task"] = args.cpus_per_task
    if args.mem:
        params["mem"] = args.mem
    executor.update_parameters(**params)
    argv = task_argv(args)
    with executor.batch():
        jobs = [executor.submit(CellTask(argv, c.id)) for c in todo]
    saved = load_jobs(out, matrix.name)
    saved.update({c.id: j.job_id for c, j in zip(todo, jobs)})
    path = jobs_file(out, matrix.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1))
    console.print(f"submitted array {jobs[0].job_id.split('_')[0]} ({len(jobs)} task(s)); `bench status` with "
                  f"the same arguments follows it; task logs in {log_dir.parent}", highlight=False)
    return 0
