"""What a `--workers` child and a SLURM task run: the cells file a launch writes, and the one bootstrap
that rebuilds its cells and trains them.

A child never re-parses a command line: the launching process writes the cells it expanded (id, axes,
resolved config), its run options and the plugins it loaded to one JSON file (``write_cells``), and
the child rebuilds exactly those cells from it (``read_cells``), loading the same plugins first and
refusing a cell whose config no longer hashes to its id. ``run_child`` is everything a child does
before and around the cells' lifecycle (bench.run.engine.cell.run_cells): plugins, threads, the
cells it was given, nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_write_json
from ..errors import ConfigError
from ..run.config.options import RunOptions


@dataclass(frozen=True)
class Handoff:
    """The cells file's content: the results folder name, the cells, the run options, and (with
    --force) the launch's start, after which a finished record counts as trained by this launch."""

    matrix: str
    cells: tuple
    opts: RunOptions
    fresh_after: str | None = None


def write_cells(path: Path, matrix_name: str, cells, opts: RunOptions, fresh_after: str = "") -> None:
    """The cells (id, axes, resolved config), run options and loaded plugins a child trains from."""
    from ..plugins import LOADED

    options = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}
    options.update(out=str(Path(opts.out).absolute()), loggers=list(opts.loggers), command=list(opts.command))
    # every plugin loaded here (a matrix's own included), by file when it was loaded from one
    plugins = [[p.file if p.file and Path(p.file).stem == p.module else p.module, p.how] for p in LOADED.values()]
    atomic_write_json(path, {"matrix": matrix_name, "fresh_after": fresh_after, "plugins": plugins,
                             "options": options, "cells": [c.to_dict() for c in cells]})


def read_cells(path: Path) -> Handoff:
    """``write_cells``'s file, its plugins loaded first; a cell whose config no longer hashes to its id
    (a plugin changed since the launch) is one error, not a silent new cell."""
    from ..plugins import load_plugin
    from ..run.config.matrix import Cell

    data = json.loads(Path(path).read_text())
    for spec, how in data.get("plugins", []):  # before the cells: their parts must be registered
        load_plugin(spec, how)
    cells = tuple(Cell.from_dict(c) for c in data["cells"])
    for c in cells:
        if not c.id.endswith(c.config.config_hash()[:6]):
            raise ConfigError(f"cell {c.id} no longer hashes to its id here (a plugin or config changed since "
                              "the launch); rerun the launching command")
    o = data["options"]
    opts = RunOptions(**{**o, "out": Path(o["out"]), "loggers": tuple(o["loggers"]),
                         "command": tuple(o.get("command") or ())})
    return Handoff(data["matrix"], cells, opts, data.get("fresh_after") or None)


def run_child(cells_file: Path, only: list[str] | None = None, progress=None, log=None,
              on_record=None) -> tuple[Handoff, list]:
    """The bootstrap of every child: load the plugins the launching command loaded, set torch's
    threads to the share the launcher gave it (OMP_NUM_THREADS), rebuild the cells (``only`` these
    ids, when given) and run their lifecycle. Returns the handoff and the records it trained."""
    from ..plugins import load_entry_points, load_env
    from ..run.engine.cell import run_cells  # here: reading a cells file (bench status) needs no Lightning

    load_entry_points()  # as the launching command did; then its --plugin modules (exported in the environment)
    load_env()
    handoff = read_cells(Path(cells_file))
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    cells = list(handoff.cells)
    if only is not None:
        cells = [c for c in cells if c.id in set(only)]
        missing = sorted(set(only) - {c.id for c in cells})
        if missing:
            raise ConfigError(f"cell(s) {', '.join(missing)} not in {cells_file}")
    done = run_cells(handoff.matrix, cells, handoff.opts, progress, handoff.fresh_after, log=log,
                     on_record=on_record)
    return handoff, done
