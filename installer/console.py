"""Rich console and progress helpers shared by the CLI and the library.

Progress is shown only on a terminal and never under ``--json``; library code takes a
``Progress``-like object (or ``NullProgress``) so it never decides how to render.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.theme import Theme

THEME = Theme({"ok": "green", "warn": "yellow", "err": "bold red", "dim": "dim", "key": "cyan"})

out = Console(theme=THEME, highlight=False)
err = Console(theme=THEME, stderr=True, highlight=False)


class NullProgress:
    """Same calls as rich's Progress; does nothing. Thread-safe by being empty."""

    def add_task(self, description: str, total: float | None = None, **_: object) -> int:
        return 0

    def advance(self, task_id: int, advance: float = 1) -> None:
        pass

    def update(self, task_id: int, **_: object) -> None:
        pass


@contextmanager
def progress(enabled: bool = True) -> Iterator[Progress | NullProgress]:
    """A byte-oriented progress display on stderr, or a no-op when disabled or not a TTY."""
    if not enabled or not sys.stderr.isatty():
        yield NullProgress()
        return
    bar = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    with bar:
        yield bar
