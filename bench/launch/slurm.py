"""`--slurm`: the unfinished cells of a launch as one SLURM job array, through submitit.

One array task per cell. A cell is the unit that is claimed, checkpointed, requeued and timed, so
one task per cell makes SLURM's own accounting (time limit, requeue count, state) that of the
cell, lets the scheduler backfill cells independently, and makes a preemption cost one cell.
Packing tiny cells into one task would save only the task start-up (seconds; nano cells are the
only ones that short), at the price of a time limit that must cover the whole pack.

Each task is a ``CellTask`` (a submitit Checkpointable): it imports this checkout (PYTHONPATH is
the repository root, the python is this venv's, the working directory the submitter's) and runs
the children's one bootstrap (child.run_child) on its cell of the cells file the submission wrote
(OUT/<name>/.slurm/cells-<time>-<pid>.json: ids, axes, resolved configs and run options, so nothing
is re-parsed): the same "claim, train, record, release" path as every launcher, writing into the
same results tree, so `bench table` and `bench report` read SLURM results unchanged. On a timeout
or preemption submitit calls ``checkpoint``: the task releases its claim and is requeued; the
requeued task resumes the cell from its last checkpoint (OUT/<name>/<cell>/checkpoints/).
Job ids are saved in OUT/<name>/.slurm/jobs.json for `bench status`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_json
from ..errors import ConfigError, need
from ..results.records import cell_dir
from ..run.engine.folder import record_of

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks SLURM for (its GPUs are the launch's --devices-per-cell)."""

    partition: str | None = None  # None: the cluster's default
    time: int = 60  # minutes per task; a task that reaches it is requeued and resumes
    cpus_per_task: int | None = None
    mem: str | None = None  # e.g. 64G
    array_parallelism: int = 256  # tasks at once
    signal_delay: int = 90  # seconds before the time limit at which a task checkpoints and requeues


class CellTask:
    """One array task: train one cell (by id) of the cells file ``cells_file``. Callable and
    checkpointable, as submitit wants."""

    def __init__(self, cells_file: str, cell_id: str, root: str = str(ROOT), cwd: str | None = None):
        self.cells_file, self.cell_id, self.root, self.cwd = str(cells_file), cell_id, root, cwd or os.getcwd()

    def __call__(self) -> str:
        os.chdir(self.cwd)  # relative paths in the config mean what they meant to the submitter
        if self.root not in sys.path:
            sys.path.insert(0, self.root)
        os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")
        from .child import run_child

        handoff, done = run_child(Path(self.cells_file), only=[self.cell_id], log=lambda m: print(m, flush=True))
        rec = done[0] if done else record_of(cell_dir(handoff.opts.out, handoff.matrix, self.cell_id))
        status = rec.status if rec is not None else "skipped (claimed by a live holder)"
        print(f"{self.cell_id}: {status}", flush=True)
        if status not in ("ok", "diverged") and not status.startswith("skipped"):
            raise RuntimeError(f"{self.cell_id} ended {status}: {rec.error if rec is not None else ''}")
        return status

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on timeout/preemption: let go of the claim, requeue this same task
        (the cell's own Lightning checkpoint is what it resumes from)."""
        import submitit

        from ..run.engine.cell import release_held  # loaded already: this is the task's own process

        release_held()
        return submitit.helpers.DelayedSubmission(CellTask(self.cells_file, self.cell_id, self.root, self.cwd))


def jobs_file(out: Path, matrix_name: str) -> Path:
    return Path(out) / matrix_name / ".slurm" / "jobs.json"


def load_jobs(out: Path, matrix_name: str) -> dict[str, str]:
    """cell id -> the latest SLURM job id submitted for it."""
    try:
        return json.loads(jobs_file(out, matrix_name).read_text())
    except (OSError, ValueError):
        return {}


def submit(matrix_name: str, cells, opts, slurm: SlurmOptions, gpus: int,
           fresh_after: str = "") -> tuple[list, Path, Path]:
    """One array task per cell through submitit, each asking for ``gpus`` GPUs (0: a CPU task);
    returns (jobs, the task log folder, the cells file)."""
    need("submitit", "--slurm")
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not found: --slurm needs a SLURM cluster (or run "
                          ".ci/slurm-up.sh); --dry-run lists the cells it would submit")
    import submitit

    from .child import write_cells

    out = Path(opts.out).absolute()
    slurm_dir = out / matrix_name / ".slurm"
    cells_file = slurm_dir / f"cells-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}.json"
    log_dir = slurm_dir / "%j"
    executor = submitit.SlurmExecutor(folder=log_dir, python=sys.executable)
    params = {"time": slurm.time, "array_parallelism": slurm.array_parallelism, "signal_delay_s": slurm.signal_delay,
              "partition": slurm.partition, "cpus_per_task": slurm.cpus_per_task, "mem": slurm.mem}
    params = {k: v for k, v in params.items() if v}
    params.update(job_name=f"bench-{matrix_name}", stderr_to_stdout=True,
                  setup=[f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}", f"cd {os.getcwd()}",
                         "export LITDATA_DISABLE_VERSION_CHECK=1"])
    if gpus:  # one srun task per GPU: Lightning's SLURM environment sees its ranks
        params.update(gpus_per_node=gpus, ntasks_per_node=gpus)
    executor.update_parameters(**params)
    before = set(slurm_dir.glob("*")) if slurm_dir.exists() else set()
    write_cells(cells_file, matrix_name, cells, opts, fresh_after)
    try:
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():  # submitit echoes sbatch's stderr
            jobs = [executor.submit(CellTask(str(cells_file), c.id)) for c in cells]
    except submitit.core.utils.FailedJobError as e:  # sbatch refused the array (a partition, a resource)
        for path in set(slurm_dir.glob("*")) - before:  # this submission's cells file and task pickles
            if path.is_file():
                path.unlink(missing_ok=True)
        text = " ".join(str(e).split())
        raise ConfigError(f"sbatch refused the array: {text[-300:]}") from None
    saved = load_jobs(out, matrix_name)
    saved.update({c.id: j.job_id for c, j in zip(cells, jobs)})
    atomic_write_json(jobs_file(out, matrix_name), saved, indent=1)
    return jobs, log_dir.parent, cells_file
