"""The one launcher: where a command's cells run. `bench run`, `bench ladder` and `bench sweep` expand
their cells, then hand them to ``launch``, which trains them in this process, in local worker
processes (workers.py) or submits them to SLURM (slurm.py; with --wait it then waits for the tasks),
and returns what the command shows.

Every way runs the same lifecycle on the same results tree (claim, train, record, release), so a
cell finished by any launcher is not trained again by another, and the command's tables read the
records however they were made. ``launch`` never renders: it returns the records (``Launched``) and
the command builds its tables from them and from the results folder.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from ..errors import Interrupted
from ..results.records import cell_dir, now
from ..run.config.matrix import axis_order
from ..run.config.precision import check_device
from ..run.engine.folder import finished, record_of
from ..run.engine.claims import holder
from ..run.engine.ranks import is_rank_zero
from ..run.config.options import RunOptions
from .memory import warn_too_big
from .slurm import SlurmOptions, submit
from .workers import run_workers


@dataclass(frozen=True)
class LaunchOptions:
    """Where the cells run: in this process (workers "1"), N local workers, or SLURM tasks."""

    workers: str = "1"  # a positive count or 'auto'
    devices_per_cell: int = 1  # a worker's GPUs, or a SLURM task's; the cells' train.devices
    slurm: SlurmOptions | None = None  # submit a job array instead of training here
    gpu: str | None = None  # warn about cells whose estimated memory does not fit this GPU
    dry_run: bool = False  # list the cells to train (or submit), train nothing


@dataclass(frozen=True)
class Launched:
    """What a launch did, for the command to show: the records of its cells (trained now, or found
    finished), the cells left resumable, and ``here``: False when no result is to be shown by this
    process (a dry run, a SLURM submission, another rank of a multi-device cell)."""

    records: tuple = ()
    unfinished: tuple[str, ...] = ()
    here: bool = True

    @property
    def code(self) -> int:
        """1 when cells were left unfinished, else 0 (the command adds its own reasons)."""
        return 1 if self.unfinished else 0


def pending(opts: RunOptions, name: str, cells) -> list:
    """The cells a launch has to train: all of them with --force, else those neither finished nor
    claimed by a live holder (another run training them)."""
    if opts.force:
        return list(cells)
    todo = []
    for c in cells:
        folder = cell_dir(opts.out, name, c.id)
        claim = holder(folder)
        if not finished(record_of(folder)) and (claim is None or claim.is_stale()):
            todo.append(c)
    return todo


def launch(name: str, cells, opts: RunOptions, how: LaunchOptions = LaunchOptions(),
           console: Console | None = None) -> Launched:
    """Train (or submit) ``cells`` into OUT/``name``/ as ``how`` says; see the module docstring."""
    from ..console import err, out

    console = console or out
    cells = list(cells)
    opts = dataclasses.replace(opts, out=Path(opts.out).absolute(),  # children may start anywhere
                               axis_order=opts.axis_order or axis_order(cells),  # the whole launch's order
                               command=opts.command or tuple(sys.argv))  # what every record keeps
    if how.gpu:
        warn_too_big(cells, how.gpu, err)
    if how.slurm is not None:
        return _submit(name, cells, opts, how, console)
    check_device(c.config for c in cells)  # e.g. fp8 on a machine without it: one line, nothing trained
    if how.dry_run:
        todo = pending(opts, name, cells)
        console.print(f"{name}: {len(todo)} cell(s) to train, {len(cells) - len(todo)} done or being trained "
                      "elsewhere (dry run: nothing trained)", highlight=False)
        for c in todo:
            console.print(f"  {c.id}", highlight=False)
        return Launched(here=False)
    if how.workers != "1":
        accelerator = cells[0].config.train.accelerator if cells else "auto"
        records, unfinished = run_workers(name, cells, opts, how.workers, how.devices_per_cell, accelerator, console)
        return Launched(tuple(records), tuple(unfinished))
    from ..run.engine.cell import run_matrix  # here: a launch through workers or SLURM needs no Lightning

    if not is_rank_zero():  # another rank of a multi-device cell: train along, write and print nothing
        run_matrix(name, cells, dataclasses.replace(opts, quiet=True), Console(quiet=True))
        return Launched(here=False)
    return Launched(tuple(run_matrix(name, cells, opts, console)))


def _submit(name: str, cells, opts: RunOptions, how: LaunchOptions, console: Console) -> Launched:
    todo = pending(opts, name, cells)
    console.print(f"{name}: {len(todo)} cell(s) to submit, {len(cells) - len(todo)} done or running",
                  highlight=False)
    if how.dry_run:
        for c in todo:
            console.print(f"  {c.id}", highlight=False)
        return Launched(here=False)
    if not todo:
        return _follow(name, cells, todo, opts, console, "") if opts.wait else Launched(here=False)
    # 'auto' means a GPU where there is one: on a cluster, the GPUs the task asks for
    gpus = how.devices_per_cell if any(c.config.train.accelerator != "cpu" for c in todo) else 0
    jobs, log_dir, cells_file = submit(name, todo, opts, how.slurm, gpus, now() if opts.force else "")
    console.print(f"submitted array {jobs[0].job_id.split('_')[0]} ({len(jobs)} task(s), "
                  f"{f'{gpus} GPU(s)' if gpus else 'no GPU'} each); task logs in {log_dir}", highlight=False)
    follow = f"`bench status --cells {cells_file}` follows them"
    if not opts.wait:
        console.print(f"{follow}; once they are done, this command without --slurm trains nothing and shows the "
                      "results (or add --wait)", highlight=False, soft_wrap=True)
        return Launched(here=False)
    return _follow(name, cells, todo, opts, console, follow)


def _follow(name: str, cells, todo, opts: RunOptions, console: Console, follow: str, poll: float = 5.0,
            grace: float = 60.0) -> Launched:
    """--slurm --wait: wait until no submitted cell is queued, running or claimed (a task not yet in
    the queue gets ``grace`` seconds to appear), then return the records as a local launch does."""
    from rich.progress import Progress

    from ..console import progress_columns
    from .status import cell_states

    start = time.monotonic()
    try:
        with Progress(*progress_columns(), console=console, disable=opts.quiet) as progress:
            task = progress.add_task(f"[bold]{name}[/] SLURM tasks done", total=len(todo))
            while True:
                rows = cell_states(opts.out, name, todo)
                progress.update(task, completed=sum(r["state"] in ("done", "failed") for r in rows))
                if not any(r["state"] in ("queued", "running") or (r["state"] == "not started" and
                                                                   time.monotonic() - start < grace) for r in rows):
                    break
                time.sleep(poll)
    except KeyboardInterrupt:
        raise Interrupted(signal.SIGINT, f"stopped waiting; the SLURM tasks go on ({follow})") from None
    records = {c.id: record_of(cell_dir(opts.out, name, c.id)) for c in cells}
    unfinished = tuple(c.id for c in todo if records[c.id] is None or records[c.id].status == "interrupted")
    if unfinished:
        console.print(f"[red]{len(unfinished)} cell(s) not finished[/] (see their task logs; the same command "
                      f"resubmits them): {', '.join(unfinished)}", highlight=False)
    return Launched(tuple(r for r in records.values() if r is not None), unfinished)
