"""Where the tools write: images, graphs, new specs and studies, never over a spec they read,
never through a link, always whole (a temporary file renamed into place)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from lossdsl.output_files import write_atomically
from lossdsl.tools import ToolError


def check_output(
    path: Path, suffixes: Iterable[str], inputs: Iterable[Path] = (), replace: bool = True
) -> None:
    """Raise `ToolError` unless `path` may be written: its suffix is one of `suffixes`, it is
    none of the `inputs`, its folder exists, and what is there is a regular file (replaced
    only when `replace`)."""
    allowed = tuple(suffixes)
    if path.suffix not in allowed:
        raise ToolError(f"{path}: the output is a {' or '.join(allowed)} file")
    target = os.path.realpath(path)
    for source in inputs:
        if os.path.realpath(source) == target:
            raise ToolError(f"{path} is {source}, an input of this command; give another path")
    if not path.parent.is_dir():
        raise ToolError(f"cannot write {path}: no folder {path.parent}")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise ToolError(f"{path} is not a regular file (a link or a folder); give another path")
    if not replace:
        raise ToolError(f"{path} exists; remove it or give another path")


def write_output(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)`, then the temporary file renamed to `path`."""
    try:
        write_atomically(path, write)
    except OSError as error:
        raise ToolError(f"cannot write {path}: {error.strerror or error}") from None


def write_text_output(path: Path, text: str) -> None:
    def write(target: Path) -> None:
        target.write_text(text, encoding="utf-8")

    write_output(path, write)
