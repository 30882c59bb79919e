"""Where the grammar and the standard library live: inside the wheel, or at the repo root."""

from __future__ import annotations

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


def is_path_reference(ref: str) -> bool:
    """LANGUAGE.md: an argument with a `/` or ending in `.loss` is a path, else a standard name."""
    return "/" in ref or ref.endswith(".loss") or "\\" in ref


def resolve_reference(ref: str) -> Path | None:
    """A path, or a standard-library name, to a file (None when there is none)."""
    if is_path_reference(ref):
        path = Path(ref)
        return path if path.is_file() else None
    return stdlib_index().get(ref)
