"""The two consoles every command prints through, and the one progress-column factory."""

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
