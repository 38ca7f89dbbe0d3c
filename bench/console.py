"""The two consoles every command prints through, the one progress-column factory, and the line form
of progress where stderr is a log rather than a terminal."""

from __future__ import annotations

import sys

from rich.console import Console

# Tables are wide: give logs and pipes (80 columns by default) room for a full leaderboard row.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def progress_columns(*fields: str, remaining: bool = False) -> list:
    """Description, bar, n/m, one text column per task field named in ``fields``, elapsed time (and
    the time remaining): the one layout of every progress display."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    cols += [TextColumn(f"{{task.fields[{f}]}}") for f in fields]
    cols.append(TimeElapsedColumn())
    if remaining:
        cols.append(TimeRemainingColumn())
    return cols


def logs_progress(every: float | None, stream=None) -> bool:
    """Lines, not a live display: an interval is set (None: none) and stderr is a file or a pipe."""
    stream = stream or sys.stderr
    return every is not None and every >= 0 and not (hasattr(stream, "isatty") and stream.isatty())


def clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(cell: str, step, total, loss: str, tps: str, eta: str, phase: str) -> str:
    return f"{cell}: step {step}/{total or '?'}, loss {loss}, {tps} tok/s, ETA {eta}, phase {phase}"
