"""The progress bar long commands show on stderr, in terminals only (pipes and logs stay clean)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(label: str, total: int, *, bytes_: bool = False) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`: n more items (or bytes, with `bytes_`) of `total` done. The bar vanishes at the end."""
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    counter = DownloadColumn() if bytes_ else MofNCompleteColumn()
    progress = Progress(TextColumn(label), BarColumn(), counter, TimeElapsedColumn(), transient=True,
                        disable=not sys.stderr.isatty())
    with progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)
