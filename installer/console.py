"""Rich console and progress helpers shared by the CLI and the library.

Progress is shown only on a terminal and never under ``--json``; library code takes a
``Progress``-like object (or ``NullProgress``) so it never decides how to render.

Rich reads ``[...]`` in printed text as markup, so ``pip install 'airlock[lab]'`` would
print as ``pip install 'airlock'`` and a stray ``[/]`` would fail. Only our own literals
carry markup: every other value printed (messages, hints, paths, names, host output) goes
through ``esc``; progress descriptions are never markup.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
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


def esc(value: object) -> str:
    """VALUE as literal text inside our markup: ``out.print(f"[ok]wrote[/] {esc(path)}")``."""
    return escape(str(value))


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
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    with bar:
        yield bar
