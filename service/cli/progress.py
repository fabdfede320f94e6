"""The progress bar shared by `plcert certify` and `plcert submit` (stderr, cleared when done)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn


def stage_progress(console: Console, *, stage_width: int = 32) -> Progress:
    """A one-line bar: current stage, bar, percentage, elapsed time."""
    return Progress(
        TextColumn(f"{{task.description:<{stage_width}}}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
