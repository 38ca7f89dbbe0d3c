"""`--workers N|auto`: several cells at once on one machine.

The parent writes the cells file (child.py: ids, axes, resolved configs, run options, plugins) and
starts N children, each this module run on that file alone (child.run_child rebuilds the very
cells the parent listed), pinned to its own GPUs (CUDA_VISIBLE_DEVICES, ``--devices-per-cell``
each) or, on CPU, to its share of the cores (OMP_NUM_THREADS and torch threads). Each child walks
the cells and trains every one it can claim (bench.run.engine.cell.run_cells): the claims keep two
children off one cell, and a killed child loses only its own cell, whose claim goes stale and whose
checkpoint resumes on the next run. Each child writes a small status file and a log in its parent's
own folder (OUT/<name>/.workers/<time>-<pid>/w<i>.json, w<i>.log: two launches never share one);
the parent shows one display of every worker and the cells, from those files and the records, and
returns the records for the command to show.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from ..console import logs_progress, progress_columns, progress_line
from ..errors import ConfigError, Interrupted
from ..results.records import DONE, cell_dir, now
from ..run.engine.claims import holder
from ..run.engine.folder import record_of
from ..run.engine.ranks import is_rank_zero
from .child import run_child, write_cells

ROOT = Path(__file__).resolve().parents[2]


def visible_gpus() -> list[str]:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def plan_workers(workers: str, per_cell: int, accelerator: str, n_cells: int) -> list[dict]:
    """One dict of environment settings per worker: its GPUs, or its CPU thread count."""
    if per_cell < 1:
        raise ConfigError(f"--devices-per-cell must be at least 1, got {per_cell}")
    gpus = [] if accelerator == "cpu" else visible_gpus()
    if workers == "auto":
        n = len(gpus) // per_cell if gpus else (os.cpu_count() or 1)
        n = max(1, min(n, n_cells))
    elif workers.isdigit() and int(workers) >= 1:
        n = int(workers)
    else:
        raise ConfigError(f"--workers takes a positive integer or 'auto', got {workers!r}")
    if gpus:
        if n * per_cell > len(gpus):
            raise ConfigError(f"{n} workers x {per_cell} GPU(s) each need {n * per_cell} GPUs; "
                              f"{len(gpus)} visible ({','.join(gpus)})")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(gpus[i * per_cell:(i + 1) * per_cell])} for i in range(n)]
    threads = max(1, (os.cpu_count() or 1) // n)
    return [{"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
            for _ in range(n)]


class StatusFile:
    """Stands in for the rich Progress that train_cell/LiveProgress feed: writes the worker's
    current cell, step, loss and tok/s to a JSON file the parent reads."""

    def __init__(self, path: Path, worker: int, device: str):
        self.path = path
        self.state = {"worker": worker, "pid": os.getpid(), "device": device, "cell": None, "step": 0,
                      "total": 0, "loss": "-", "tps": "-", "trained": 0, "state": "starting"}
        self.write()

    def write(self) -> None:
        tmp = self.path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.path)

    def add_task(self, description, total=None, **fields):
        self.state.update(cell=description.strip(), step=0, total=total or 0, state="training", **fields)
        self.write()
        return 0

    def update(self, task, completed=None, **fields):
        if completed is not None:
            self.state["step"] = completed
        self.state.update(fields)
        self.write()

    def remove_task(self, task):
        self.state.update(cell=None, state="idle")
        self.write()


def child_main(argv: list[str]) -> int:
    """One worker: ``argv`` is the cells file alone (Lightning starts the other ranks of a
    multi-device cell with the same argv: they rebuild the same cells and follow rank 0)."""
    index = int(os.environ["BENCH_WORKER"])
    threads = os.environ.get("OMP_NUM_THREADS")
    device = f"cuda:{os.environ['CUDA_VISIBLE_DEVICES']}" if os.environ.get("CUDA_VISIBLE_DEVICES") \
        else f"cpu x{threads or '?'}"
    if not is_rank_zero():  # another rank of this worker's multi-device cell: train along, report nothing
        run_child(Path(argv[0]))
        return 0
    status = StatusFile(Path(os.environ["BENCH_WORKER_STATUS"]), index, device)

    def on_record(rec):
        status.state["trained"] += 1
        print(f"w{index} {rec.status} {rec.id}", flush=True)

    _, done = run_child(Path(argv[0]), progress=status, log=lambda m: print(m, flush=True), on_record=on_record)
    status.state.update(state="finished", cell=None)
    status.write()
    return 143 if any(r.status == "interrupted" for r in done) else 0


KEEP_LAUNCHES = 7 * 24 * 3600.0  # seconds: a launch folder untouched this long is pruned by the next launch


def prune_launches(parent: Path, older_than: float = KEEP_LAUNCHES) -> list[Path]:
    """Launch folders whose files were all last written more than ``older_than`` seconds ago (a live
    launch's workers rewrite their status files as they train)."""
    import shutil

    pruned = []
    for folder in sorted(Path(parent).glob("*/")) if Path(parent).is_dir() else []:
        files = [p for p in folder.rglob("*") if p.is_file()]
        try:
            newest = max([folder.stat().st_mtime] + [p.stat().st_mtime for p in files])
        except FileNotFoundError:
            continue
        if time.time() - newest > older_than:
            shutil.rmtree(folder, ignore_errors=True)
            pruned.append(folder)
    return pruned


def launch_dir(parent: Path) -> Path:
    """A folder of its own for one launch's cells file, worker logs and status files (older ones,
    untouched for KEEP_LAUNCHES, are pruned first)."""
    prune_launches(parent)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for n in range(1000):
        folder = parent / (f"{stamp}-{os.getpid()}" + (f"-{n}" if n else ""))
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise ConfigError(f"cannot make a launch folder under {parent}")


def held_elsewhere(folder: Path) -> bool:
    """A live claim once this launch's workers have all exited: another run is training the cell."""
    claim = holder(folder)
    return claim is not None and not claim.is_stale()


def start_workers(plan: list[dict], run_dir: Path, cells_file: Path) -> list:
    """One child per entry of ``plan``, each given the cells file: (process, its log file, its status
    file path)."""
    procs = []
    for i, extra in enumerate(plan):
        status = run_dir / f"w{i}.json"
        env = {**os.environ, **extra, "BENCH_WORKER": str(i), "BENCH_WORKER_STATUS": str(status),
               "PYTHONPATH": os.pathsep.join(
                   [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
        log = open(run_dir / f"w{i}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "bench.launch.workers", str(cells_file)],
                                       env=env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True),  # a terminal's Ctrl-C reaches the parent only
                      log, status))
    return procs


def run_workers(matrix_name: str, cells, opts, workers: str, per_cell: int, accelerator: str,
                console: Console) -> tuple[list, list[str]]:
    """Start the workers, show one display until they all exit; return every finished record and
    the ids of the cells left unfinished (a killed worker's cell; not one another run is training)."""
    opts = dataclasses.replace(opts, out=Path(opts.out).absolute())  # children may start anywhere

    def ours(c) -> bool:  # not finished (or --force), and not in another live run's hands (unless --wait)
        folder = cell_dir(opts.out, matrix_name, c.id)
        if not opts.force and getattr(record_of(folder), "status", None) in DONE:
            return False
        return opts.wait or not held_elsewhere(folder)

    todo = [c for c in cells if ours(c)]
    plan = plan_workers(workers, per_cell, accelerator, max(1, len(todo)))  # checks --workers either way
    if not todo:  # no worker to start: each would load the whole stack to find nothing to train
        held = sum(held_elsewhere(cell_dir(opts.out, matrix_name, c.id)) for c in cells)
        console.print(f"{matrix_name}: 0 cell(s) to train, {len(cells) - held} already done"
                      + (f", {held} being trained by another run" if held else ""))
        return [r for c in cells if (r := record_of(cell_dir(opts.out, matrix_name, c.id))) is not None], []
    run_dir = launch_dir(opts.out / matrix_name / ".workers")
    cells_file = run_dir / "cells.json"
    write_cells(cells_file, matrix_name, cells, opts, now() if opts.force else "")
    where = ", ".join(e.get("CUDA_VISIBLE_DEVICES") and "GPU " + e["CUDA_VISIBLE_DEVICES"]
                      or e["OMP_NUM_THREADS"] + " thread(s)" for e in plan)
    console.print(f"{matrix_name}: {len(todo)} cell(s) to train with {len(plan)} worker(s) ({where}); "
                  f"logs in {run_dir}")
    procs = start_workers(plan, run_dir, cells_file)
    stopped: list[int] = []

    def forward(signum, frame):  # stop every worker at a step boundary; each records its cell 'interrupted'
        stopped.append(signum)
        for p, _, _ in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        _display(progress_columns("loss", "tps", "phase"), procs, cells, matrix_name, opts, console)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    for i, (proc, log, _) in enumerate(procs):
        log.close()
        if proc.returncode != 0 and not stopped:
            console.print(f"[red]worker w{i} exited {proc.returncode}[/]: its cell stays resumable; "
                          f"see {run_dir / f'w{i}.log'}")
    records = {c.id: record_of(cell_dir(opts.out, matrix_name, c.id)) for c in cells}
    unfinished = [cid for cid, r in records.items() if (r is None or r.status == "interrupted")
                  and not held_elsewhere(cell_dir(opts.out, matrix_name, cid))]
    if stopped:
        raise Interrupted(stopped[0], f"workers stopped by signal {stopped[0]}; {len(unfinished)} cell(s) left "
                                      "resumable; rerun the same command to resume")
    if unfinished:
        console.print(f"[red]{len(unfinished)} cell(s) not finished[/] (resumable: run the same command again): "
                      f"{', '.join(unfinished)}", highlight=False)
    return [r for r in records.values() if r is not None], unfinished


def _display(columns, procs, cells, matrix_name, opts, console) -> None:
    """One display of the matrix and every worker until all workers have exited."""
    lines, last_lines = logs_progress(opts.progress_every), None  # stderr a log: a line per worker's cell
    with Progress(*columns, console=console, disable=opts.quiet) as progress:
        matrix_task = progress.add_task(f"[bold]{matrix_name}[/] cells", total=len(cells), loss="loss", tps="tok/s",
                                        phase="phase")
        tasks = [progress.add_task(f"  w{i} starting", total=1, loss="", tps="", phase="") for i in range(len(procs))]
        while True:
            log_now = lines and (last_lines is None or time.monotonic() - last_lines >= opts.progress_every)
            last_lines = time.monotonic() if log_now else last_lines
            running = [p.poll() is None for p, _, _ in procs]
            n_done = sum(1 for c in cells if getattr(record_of(cell_dir(opts.out, matrix_name, c.id)), "status",
                                                     None) in DONE)
            progress.update(matrix_task, completed=n_done)
            for i, (proc, _, status) in enumerate(procs):
                try:
                    s = json.loads(status.read_text())
                except (OSError, ValueError):
                    continue
                state = s["cell"] or s["state"] if running[i] else f"exited {proc.returncode}"
                progress.update(tasks[i], description=escape(f"  w{i} [{s['device']}] {state}"),
                                total=max(1, s["total"]), completed=s["step"], loss=str(s["loss"]), tps=str(s["tps"]),
                                phase=s.get("phase", ""))
                if log_now and running[i] and s["cell"]:
                    print(progress_line(s["cell"], s["step"], s["total"], str(s["loss"]), str(s["tps"]),
                                        s.get("eta", "-"), s.get("phase", "train")), file=sys.stderr, flush=True)
            if not any(running):
                break
            time.sleep(0.5)


if __name__ == "__main__":
    try:
        sys.exit(child_main(sys.argv[1:]))
    except ConfigError as e:  # e.g. a cell that no longer hashes to its id: one line in the worker's log
        print(f"error: {e}", flush=True)
        sys.exit(2)
