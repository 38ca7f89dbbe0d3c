"""`bench status`: where every cell of a matrix stands (records, claims, SLURM); the states are
bench.launch.status's."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ..errors import ConfigError
from ..run.config.options import STALE_AFTER
from .common import add_filters, add_name, add_out, add_overrides, cells_from, run_name

HELP = "queued / running / done / failed cells of a matrix (records, claims, SLURM)"


def add_parser(sub):
    p = sub.add_parser("status", help=HELP)
    add_filters(p)
    add_out(p, "results folder")
    add_name(p)
    p.add_argument("--cells", default=None, metavar="FILE",
                   help="the cells of one launch, from the cells file it wrote (--slurm prints its path): a "
                        "ladder's or sweep's cells, which a matrix and overrides alone do not name")
    p.add_argument("--json", action="store_true", help='print {"cells": [{"id", "state", "slurm_job", ...}]}')
    p.add_argument("--clean", action="store_true",
                   help="first remove what killed runs left: stale claims and temp files of every cell no live run "
                        "holds, the checkpoints of finished cells, the matrix folder's temp files older than an hour "
                        "and --workers launch folders untouched for a week")
    p.add_argument("--keep-checkpoints", action="store_true", help="with --clean: keep finished cells' checkpoints")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER, metavar="SECONDS",
                   help="with --clean: a claim whose holder cannot be checked from here (another host or pid "
                        "namespace) is stale after this long without a heartbeat")
    add_overrides(p)  # the same overrides as the run: they are part of each cell's id
    return p


def main(args) -> int:
    from rich.table import Table

    from ..console import out
    from ..launch.status import cell_states

    if args.cells:
        from ..launch.child import read_cells

        try:
            handoff = read_cells(Path(args.cells))
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"--cells {args.cells}: not a cells file a launch wrote ({type(e).__name__}: {e})") \
                from None
        name, cells, results = handoff.matrix, handoff.cells, handoff.opts.out
    else:
        matrix, cells = cells_from(args)
        name, results = run_name(args, matrix), Path(args.out)
    if args.clean:
        from ..launch.status import clean

        for line in clean(results, name, cells, args.stale_after, args.keep_checkpoints):
            out.print(line, highlight=False)
    rows = cell_states(results, name, cells)
    if args.json:
        print(json.dumps({"matrix": name, "cells": rows}, indent=2))
        return 0
    counts = Counter(r["state"] for r in rows)
    t = Table(title=f"{name}: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()), title_justify="left")
    for col in ("cell", "state", "record", "SLURM job", "SLURM state", "holder"):
        t.add_column(col)
    colour = {"done": "green", "failed": "red", "running": "cyan", "queued": "yellow"}
    for r in rows:
        c = colour.get(r["state"], "magenta")
        t.add_row(r["id"], f"[{c}]{r['state']}[/]", r["record"] or "-", r["slurm_job"] or "-", r["slurm_state"] or "-",
                  r["holder"] or "-")
    out.print(t)
    return 0
