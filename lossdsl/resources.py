"""Where the grammar and the standard library live: inside the wheel, or at the repo root."""

from __future__ import annotations

import os
import stat
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _data_dir(folder: str) -> Path:
    installed = _PACKAGE / "_data" / folder
    return installed if installed.is_dir() else _PACKAGE.parent / folder


def grammar_path() -> Path:
    return _data_dir("grammar") / "loss.lark"


def stdlib_dir() -> Path:
    return _data_dir("specs")


@cache
def stdlib_index() -> dict[str, Path]:
    """Every standard spec by its file stem (stems are unique across `specs/`)."""
    return {path.stem: path for path in sorted(stdlib_dir().rglob("*.loss"))}


def standard_name(path: Path) -> str:
    """A standard spec's full name: its path under `specs/` without `.loss` (`rl/ppo`)."""
    return path.relative_to(stdlib_dir()).with_suffix("").as_posix()


@cache
def _standard_names() -> dict[str, Path]:
    names = {}
    for stem, path in stdlib_index().items():
        names[stem] = path
        names[standard_name(path)] = path
    return names


def standard_spec(name: str) -> Path | None:
    """The standard spec named by its stem (`ppo`) or by its full name (`rl/ppo`)."""
    return _standard_names().get(name)


def standard_names() -> list[str]:
    """Every name `standard_spec` takes, for suggestions."""
    return list(_standard_names())


def locate(ref: str, base: Path | None = None, paths: bool = True) -> Path | None:
    """The file a reference names, None when there is none.

    A reference is first a path, relative to `base` (the working directory when None): what
    is there wins, unless it is a folder. Otherwise it is the name of a standard spec. With
    `paths=False` (an unquoted `use NAME`) it is a standard name only.
    """
    if paths and ref:
        candidate = (base or Path.cwd()) / ref
        if _something_but_a_folder(candidate):
            return candidate
    return standard_spec(ref)


def _something_but_a_folder(path: Path) -> bool:
    """A file, a link to one, or a broken link (the user's file: reading it says what is
    wrong) is at `path`. Never raises: a name too long or with a NUL is simply not there."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            info = os.stat(path)
    except FileNotFoundError:
        return os.path.islink(path)
    except (OSError, ValueError):
        return False
    return not stat.S_ISDIR(info.st_mode)


def resolve_reference(ref: str) -> Path | None:
    """A path (from the working directory) or a standard-library name, to a file."""
    return locate(ref)
