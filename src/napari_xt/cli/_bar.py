"""The command line's rich progress bar, one shape for every command: what it counts, done / total, one live field,
elapsed and remaining time (rich is imported when a bar is made, so ``--help`` and ``--json`` never pay for it)."""

from __future__ import annotations

from typing import Any


def progress_bar(label: str, field: str) -> Any:
    """A ``rich.progress.Progress``: ``label`` in bold, the bar, ``done/total``, the text column ``field`` (e.g.
    ``"{task.fields[rate]} regions/s"``), elapsed and remaining time."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn(field),
                    TimeElapsedColumn(), TimeRemainingColumn())
