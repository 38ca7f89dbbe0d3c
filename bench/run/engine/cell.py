"""One cell's lifecycle, the same for every launcher: claim, train, record, release.

`bench run` (run_matrix), `--workers N` children and SLURM array tasks (run_cells) all go through
``CellRun.run``: a claim (claims.py) on the cell's results folder keeps two processes off one cell,
a cell finished meanwhile by someone else is not trained again, and the claim is released on every
exit path. Other ranks of a multi-device cell follow rank 0's decision without claiming.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from ...console import progress_columns
from ...atomic import remove_stale_temps
from ...errors import Interrupted
from ...faults import pause_point
from ...results.records import DONE, Record, cell_dir, read_record
from .claims import acquire, check_stale_after, holder, wait_for
from .environment import ENV_ERRNOS, DataCache, check_out, env_error, preflight
from .folder import finished, record_of, tidy
from ..config.matrix import Cell, axis_order
from .ranks import RankDecisions, is_rank_zero
from ..config.options import RunOptions
from .runner import train_cell
from .signals import StopRequest

HELD: set = set()  # claims this process holds now (released by a SLURM task's checkpoint())


def release_held() -> None:
    for claim in list(HELD):
        claim.release()
        HELD.discard(claim)


def done_record(opts, matrix_name: str, cell) -> tuple[Record | None, str | None]:
    """(the finished record, None) or (None, why it is trained again: None for a plain new cell)."""
    path = cell_dir(opts.out, matrix_name, cell.id) / "record.json"
    if not path.exists():
        return None, None
    rec, problem = read_record(path)
    if problem is not None:
        if problem.startswith("status 'running'"):
            return None, "its last run did not finish (resuming it)"
        return None, f"its record cannot be used ({problem}); training it again"
    if opts.force or rec.status not in DONE:
        return None, None
    return rec, None


class CellRun:
    """The lifecycle for the cells of one matrix in this process (data cached across cells)."""

    def __init__(self, matrix_name: str, cells, opts, progress=None, warn=None, stop=None, console=None,
                 fresh_after: str | None = None, on_data=None):
        check_stale_after(opts.stale_after)
        self.matrix_name, self.opts, self.progress, self.stop = matrix_name, opts, progress, stop
        self.fresh_after = fresh_after if opts.force else None
        self.say = (lambda m: console.print(m, highlight=False, soft_wrap=True)) if console is not None else \
            (warn or (lambda m: print(m, file=sys.stderr)))
        self.warn = warn or self.say
        self.on_data = on_data or (lambda busy: None)
        self.data, self.ranks = DataCache(), RankDecisions(opts.out, matrix_name, cells)

    def _train(self, cell, claim=None) -> Record:
        self.on_data(True)
        dm = self.data.get(cell.config)
        self.on_data(False)
        rec = train_cell(cell, self.matrix_name, dm, self.opts, self.progress if self.ranks.rank0 else None,
                         self.warn, self.stop, claim)
        if self.ranks.rank0 and self.progress is not None and hasattr(self.progress, "console"):
            summary(rec, self.progress.console)
        return rec

    def _claim(self, folder: Path, cell):
        try:
            claim = acquire(folder, stale_after=self.opts.stale_after, log=self.say)
            if claim is not None or not getattr(self.opts, "wait", False):
                if claim is None:
                    held = holder(folder)
                    self.say(f"skipped {cell.id}: being trained by {held.describe() if held else 'another run'} "
                             "(bench run --wait waits for it)")
                return claim
            held = holder(folder)
            self.say(f"waiting for {cell.id}: being trained by {held.describe() if held else 'another run'}")
            # a signal ends the wait at once, with no claim taken (the caller sees stop.signum)
            return wait_for(folder, stale_after=self.opts.stale_after, poll=2.0, log=self.say, stop=self.stop)
        except OSError as e:
            if e.errno in ENV_ERRNOS:
                raise env_error(e, f"{cell.id}: cannot claim {folder}") from None
            raise

    def run(self, cell) -> Record | None:
        """Claim, train, record, release; None when another live process holds the cell, or this
        run lost its claim to another (which trains the cell on)."""
        folder = cell_dir(self.opts.out, self.matrix_name, cell.id)
        if not self.ranks.rank0:  # another rank of a multi-device cell: rank 0 claims, this one follows
            return self._train(cell) if self.ranks.wait(cell.id) else None
        claim = self._claim(folder, cell)
        if claim is None:
            self.ranks.record(cell.id, False)
            return None
        HELD.add(claim)
        pause_point("claimed")
        remove_stale_temps(folder)  # left by a run killed mid-write; ours now, as the claim is
        try:
            rec = record_of(folder)
            if finished(rec, self.fresh_after) and (not self.opts.force or self.fresh_after is not None):
                self.ranks.record(cell.id, False)
                if not self.opts.keep_checkpoints:  # a run killed between its record and this cleanup
                    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
                return rec  # finished by another process between our listing and our claim
            self.ranks.record(cell.id, True)
            rec = self._train(cell, claim)
            return None if rec.status == "lost" else rec
        finally:
            claim.release()
            HELD.discard(claim)
            pause_point("released")


def run_cells(matrix_name: str, cells, opts, progress=None, fresh_after: str | None = None, log=None,
              on_record=None) -> list[Record]:
    """Every cell not finished and not claimed by a live holder, in order; returns what it trained.
    A cell stopped by a signal stops the walk (it resumes on the next run)."""
    opts = dataclasses.replace(opts, axis_order=opts.axis_order or axis_order(cells))
    life = CellRun(matrix_name, cells, opts, progress=progress, warn=log, fresh_after=fresh_after)
    done = []
    for cell in cells:
        folder = cell_dir(opts.out, matrix_name, cell.id)
        if life.ranks.rank0 and finished(record_of(folder), life.fresh_after):
            life.ranks.record(cell.id, False)
            cleaned = tidy(folder, opts.stale_after, opts.keep_checkpoints, done=True)
            if cleaned:
                life.say(f"{cell.id}: done; removed what a killed run left: {cleaned}")
            continue
        rec = life.run(cell)
        if rec is not None:
            done.append(rec)
            if on_record is not None:
                on_record(rec)
            if rec.status == "interrupted":
                break
    return done


def run_matrix(matrix_name: str, cells: list[Cell], opts: RunOptions, console: Console | None = None) -> list[Record]:
    """Every cell of the matrix through its lifecycle (bench/run/engine/cell.py). Finished cells (same id,
    complete record) are not trained again; a cell claimed by another live run is skipped (or
    waited for with ``opts.wait``). SIGTERM/SIGINT stop the current cell at a step boundary, record
    it as `interrupted` and raise ``Interrupted``."""
    console = console or Console()
    warn = lambda msg: console.print(f"[yellow]warning:[/] {msg}", highlight=False, soft_wrap=True)  # noqa: E731
    check_out(opts.out)
    preflight(cells)
    opts = dataclasses.replace(opts, axis_order=opts.axis_order or axis_order(cells))
    records, todo = [], []
    for cell in cells:
        rec, why = done_record(opts, matrix_name, cell)
        if rec is not None:
            records.append(rec)
            cleaned = is_rank_zero() and tidy(cell_dir(opts.out, matrix_name, cell.id), opts.stale_after,
                                              opts.keep_checkpoints, done=True)
            if cleaned:
                console.print(f"{cell.id}: done; removed what a killed run left: {cleaned}", highlight=False)
        else:
            if why:
                console.print(f"{cell.id}: {why}", highlight=False)
            todo.append(cell)
    if not todo:
        console.print(f"[green]all {len(cells)} cells of {matrix_name} are done[/] (use --force to retrain)")
        return records
    console.print(f"{matrix_name}: {len(todo)} cell(s) to train, {len(cells) - len(todo)} already done")
    columns = progress_columns("loss", "tps", "phase", remaining=True)
    with StopRequest() as stop, Progress(*columns, console=console, disable=opts.quiet, transient=False) as progress:
        matrix_task = progress.add_task(f"[bold]{matrix_name}[/] cells", total=len(cells),
                                        completed=len(cells) - len(todo), loss="loss", tps="tok/s",
                                        phase="phase")
        life = CellRun(matrix_name, todo, opts, progress=progress, warn=warn, stop=stop, console=progress.console,
                       on_data=lambda busy: progress.update(matrix_task, description=f"[bold]{matrix_name}[/] " + (
                           "preparing data" if busy else "cells")))
        for cell in todo:
            if stop.signum:
                break
            rec = life.run(cell)
            if rec is not None:
                records.append(rec)
            progress.advance(matrix_task)
            if rec is not None and rec.status == "interrupted" and not stop.signum:
                stop.signum = signal.SIGTERM  # a signal Lightning saw before ours was installed
        if stop.signum:
            where = next((f"; {r.id} stopped at step {r.interrupted_step}" + (
                f", checkpoint saved at step {r.checkpoint_step}" if r.checkpoint_step is not None else "")
                for r in records if r.status == "interrupted"), "")
            done = {r.id for r in records if r.status in DONE}
            left = [c.id for c in cells if c.id not in done]
            if not where and not left:  # the signal came after the last cell's record: nothing to resume
                console.print(f"[yellow]{stop.name} received after the last cell finished[/]: every cell is done, "
                              "nothing to resume", highlight=False)
                return records
            raise Interrupted(stop.signum, f"interrupted by {stop.name}{where}; {len(left)} cell(s) not finished: "
                                           "rerun the same command to resume")
    return records


def summary(rec: Record, console) -> None:
    status, m = rec.status, rec.metrics
    tps = f"{m.tokens_per_sec:,.0f} tok/s" if m.tokens_per_sec else "tok/s not measured"  # never a made-up 0
    text = f"val ppl {m.get('val_ppl', float('nan')):.2f}, {tps}" if status == "ok" else rec.error or ""
    console.print(f"{'[green]ok' if status == 'ok' else '[red]' + status}[/] {rec.id}: {text}")
