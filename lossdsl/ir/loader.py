"""Finding specs and their `use`s: paths, standard-library names, cycles (E105).

Every file is read by `lossdsl.spec_files.read_spec_file`, and every file read is recorded
with the reference that named it: the IR cache is keyed on exactly that record.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from pathlib import Path

from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.resources import resolve_reference, standard_names
from lossdsl.spec_files import (
    SPEC_SUFFIX,
    Reference,
    SpecFile,
    SpecFileError,
    read_spec_file,
)
from lossdsl.syntax import ast
from lossdsl.syntax.parser import parse_collecting

BYTE_ORDER_MARK = "\ufeff"


@dataclass
class Loaded:
    """A spec and every spec it uses, transitively, in the order they were reached."""

    spec: ast.SpecAST | None
    used: list[ast.SpecAST] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: list[SpecFile] = field(default_factory=list)  # every file read, the spec's first


def display_name(path: Path) -> str:
    """Paths relative to the working directory when below it, for short diagnostics."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):
        return str(path)


def load_text(text: str, file: str, base: Path | None, top: SpecFile | None = None) -> Loaded:
    """Parse `text` (the file `top`, when it came from one) and load what it uses."""
    text = text.removeprefix(BYTE_ORDER_MARK)
    loaded = Loaded(None, sources={file: text}, files=[top] if top else [])
    spec, found = parse_collecting(text, file)
    loaded.spec = spec
    loaded.diagnostics += found
    if spec is not None:
        identity = str(top.resolved) if top else _identity(file)
        _load_uses(spec, base or Path.cwd(), loaded, chain=[identity], seen=set())
    return loaded


def _identity(file: str) -> str:
    """A text's file name as the cycle check compares it: resolved, when it names a file."""
    try:
        path = Path(file)
        return str(path.resolve()) if path.is_file() else file
    except (OSError, ValueError, RuntimeError):
        return file


def unreadable(error: SpecFileError, name: str, where: Span, prefix: str = "") -> Diagnostic:
    """The diagnostic of a file that cannot be read as a spec: at the offending byte of the
    file `name` for an encoding error (E100), else at `where` (E105)."""
    if error.line is not None and error.col is not None:
        at = Span(name, error.line, error.col, error.line, error.col + 1)
        return Diagnostic(error.code, error.message, at, fix=error.fix)
    return Diagnostic(error.code, f"{prefix}{error.message}", where, fix=error.fix)


def _load_uses(
    spec: ast.SpecAST, base: Path, loaded: Loaded, chain: list[str], seen: set[str]
) -> None:
    for decl in spec.decls:
        if not isinstance(decl, ast.Use):
            continue
        reference = Reference(decl.target, base, paths=decl.is_path)
        target = reference.locate()
        if target is None:
            loaded.diagnostics.append(not_found(reference, decl.span, _written(decl)))
            continue
        name = display_name(target)
        try:
            used_file = read_spec_file(target, reference)
        except SpecFileError as error:
            loaded.diagnostics.append(unreadable(error, name, decl.span, f"{_written(decl)}: "))
            continue
        identity = str(used_file.resolved)
        if identity in chain:
            loaded.diagnostics.append(_cycle(decl, [*chain[chain.index(identity) :], identity]))
            continue
        loaded.files.append(used_file)  # each edge: where a `use` leads is part of the key
        if identity in seen:
            continue
        seen.add(identity)
        loaded.sources[name] = used_file.text
        used, found = _parse_used(used_file.text, name)
        loaded.diagnostics += found
        if used is not None:
            loaded.used.append(used)
            _load_uses(used, target.parent, loaded, [*chain, identity], seen)


@functools.lru_cache(maxsize=64)
def _parse_used(text: str, name: str) -> tuple[ast.SpecAST | None, tuple[Diagnostic, ...]]:
    """A used file parsed once per process for the same text: the standard specs share a few
    library files (rl_common, logprobs), and the AST and diagnostics are immutable."""
    spec, found = parse_collecting(text, name)
    return spec, tuple(found)


def _written(decl: ast.Use) -> str:
    return f'`use "{decl.target}"`' if decl.is_path else f"`use {decl.target}`"


def _cycle(decl: ast.Use, chain: list[str]) -> Diagnostic:
    cycle = " -> ".join(Path(c).name for c in chain)
    return Diagnostic(
        "E105",
        f"`use` forms a cycle: {cycle}",
        decl.span,
        fix="move the shared defs into a third spec that both use",
    )


def not_found(reference: Reference, where: Span, written: str, in_use: bool = True) -> Diagnostic:
    """E105 for a reference that names no file and no standard spec, with the closest name."""
    name = reference.name
    if reference.paths:
        path = reference.base / name
        found = f"{path} is a folder" if _is_folder(path) else f"no file {path}"
        message = f"{written}: {found}, and no spec of the standard library is named {name!r}"
    else:
        message = f"{written}: no spec of that name in the standard library"
    close = difflib.get_close_matches(name.removesuffix(SPEC_SUFFIX), standard_names(), n=1)
    return Diagnostic("E105", message, where, fix=_suggest(close[0], in_use) if close else None)


def _suggest(name: str, in_use: bool) -> str:
    if not in_use:
        return f"the standard library has `{name}` (`lossdsl list` shows them all)"
    return f'use "{name}"' if "/" in name else f"use {name}"


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


__all__ = [
    "Loaded",
    "load_text",
    "not_found",
    "unreadable",
    "resolve_reference",
    "display_name",
    "Span",
]
