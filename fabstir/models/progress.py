"""A rich progress bar for model downloads (``models pull`` and the demo)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fabstir.models.download import ProgressCallback


@contextmanager
def download_progress(label: str) -> Iterator[ProgressCallback]:
    """Show a progress bar on stderr while the block runs; yield the callback that moves it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(label, total=None)

        def advance(done_bytes: int, total_bytes: int | None) -> None:
            progress.update(task, completed=done_bytes, total=total_bytes)

        yield advance
