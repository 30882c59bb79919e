"""Progress for the slow commands (compilation, analyze, landscape, tune), drawn with `rich`
on standard error when it is a terminal, and silent otherwise (pipes, files, CI logs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Advance = Callable[..., None]


@contextmanager
def progress(description: str, total: int | None = None, console: Any = None) -> Iterator[Advance]:
    """A progress bar (a spinner when `total` is None) while the block runs; the block calls
    the yielded function to advance it. `console`: a `rich.console.Console` to draw on (the
    default is standard error); nothing is drawn when it is not a terminal."""
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:  # rich comes with typer; without it, no progress is shown
        yield _nothing
        return
    console = console if console is not None else Console(stderr=True)
    if not console.is_terminal:
        yield _nothing
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(steps: int = 1, description: str | None = None) -> None:
            bar.update(task, advance=steps, description=description or bar.tasks[0].description)

        yield advance


def _nothing(steps: int = 1, description: str | None = None) -> None:
    return None
