"""`bench submit`: a matrix's unfinished cells as one SLURM job array, through submitit.

One array task per cell. A cell is the unit that is claimed, checkpointed, requeued and timed, so
one task per cell makes SLURM's own accounting (time limit, requeue count, state) that of the
cell, lets the scheduler backfill cells independently, and makes a preemption cost one cell.
Packing tiny cells into one task would save only the task start-up (seconds; nano cells are the
only ones that short), at the price of a time limit that must cover the whole pack.

Each task is a ``CellTask`` (a submitit Checkpointable): it imports this checkout (PYTHONPATH is
the repository root, the python is this venv's, the working directory the submitter's), reads its
cell from the cells file the submission wrote (OUT/<matrix>/.slurm/cells-<time>-<pid>.json: id, axes,
resolved config and run options, so nothing is re-parsed) and runs the same
"claim, train, record, release" path as `bench run` (bench.run.engine.cell.run_cells) on its cell, writing into the
same results tree, so `bench table` and `bench report` read SLURM results unchanged. On a timeout
or preemption submitit calls ``checkpoint``: the task releases its claim and is requeued; the
requeued task resumes the cell from its last checkpoint (OUT/<matrix>/<cell>/checkpoints/).
Job ids are saved in OUT/<matrix>/.slurm/jobs.json for `bench status`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

from ..atomic import atomic_write_json
from ..errors import ConfigError
from ..results.records import cell_dir
from ..run.engine import cell as job
from ..run.engine.claims import holder
from ..run.engine.cell import finished, record_of

ROOT = Path(__file__).resolve().parents[2]


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
        from ..plugins import load_entry_points, load_env
        from .workers import read_cells

        load_entry_points()  # the plugins the launching command loaded (exported in the environment)
        load_env()
        matrix_name, cells, opts, _, _ = read_cells(Path(self.cells_file))
        opts = dataclasses.replace(opts, quiet=True)
        cells = [c for c in cells if c.id == self.cell_id]
        if not cells:
            raise RuntimeError(f"cell {self.cell_id} is not in {self.cells_file}")
        done = job.run_cells(matrix_name, cells, opts, log=lambda m: print(m, flush=True))
        rec = done[0] if done else record_of(cell_dir(opts.out, matrix_name, self.cell_id))
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
        return submitit.helpers.DelayedSubmission(CellTask(self.cells_file, self.cell_id, self.root, self.cwd))


def unsubmitted(out: Path, matrix_name: str, cells) -> list:
    """The cells neither finished nor claimed by a live holder."""
    todo = []
    for c in cells:
        folder = cell_dir(out, matrix_name, c.id)
        claim = holder(folder)
        if finished(record_of(folder)) or (claim is not None and not claim.is_stale()):
            continue
        todo.append(c)
    return todo


def jobs_file(out: Path, matrix_name: str) -> Path:
    return Path(out) / matrix_name / ".slurm" / "jobs.json"


def load_jobs(out: Path, matrix_name: str) -> dict[str, str]:
    """cell id -> the latest SLURM job id submitted for it."""
    try:
        return json.loads(jobs_file(out, matrix_name).read_text())
    except (OSError, ValueError):
        return {}


def submit(matrix_name: str, cells, opts, command: list[str], resources: dict) -> tuple[list, Path]:
    """One array task per cell through submitit; returns (jobs, the task log folder). ``resources``:
    time, array_parallelism, signal_delay_s, and partition, gpus_per_cell, cpus_per_task, mem if set."""
    if shutil.which("sbatch") is None:
        raise ConfigError("sbatch not found: `bench submit` needs a SLURM cluster (or run .ci/slurm-up.sh)")
    import submitit

    from .workers import write_cells

    out = Path(opts.out).absolute()
    slurm_dir = out / matrix_name / ".slurm"
    cells_file = slurm_dir / f"cells-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}.json"
    write_cells(cells_file, matrix_name, cells, opts, command)
    log_dir = slurm_dir / "%j"
    executor = submitit.SlurmExecutor(folder=log_dir, python=sys.executable)
    params = {k: v for k, v in resources.items() if v and k != "gpus_per_cell"}
    params.update(job_name=f"bench-{matrix_name}", stderr_to_stdout=True,
                  setup=[f"export PYTHONPATH={ROOT}${{PYTHONPATH:+:$PYTHONPATH}}", f"cd {os.getcwd()}",
                         "export LITDATA_DISABLE_VERSION_CHECK=1"])
    gpus = resources.get("gpus_per_cell")
    if gpus:  # one srun task per GPU: Lightning's SLURM environment sees its ranks
        params.update(gpus_per_node=gpus, ntasks_per_node=gpus)
    executor.update_parameters(**params)
    with executor.batch():
        jobs = [executor.submit(CellTask(str(cells_file), c.id)) for c in cells]
    saved = load_jobs(out, matrix_name)
    saved.update({c.id: j.job_id for c, j in zip(cells, jobs)})
    atomic_write_json(jobs_file(out, matrix_name), saved, indent=1)
    return jobs, log_dir.parent
