"""Finding specs and their `use`s: paths, standard-library names, cycles (E105)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.resources import resolve_reference, stdlib_index
from lossdsl.syntax import ast
from lossdsl.syntax.parser import parse_collecting


@dataclass
class Loaded:
    """A spec and every spec it uses, transitively, in the order they were reached."""

    spec: ast.SpecAST | None
    used: list[ast.SpecAST] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def display_name(path: Path) -> str:
    """Paths relative to the working directory when below it, for short diagnostics."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_text(text: str, file: str, base: Path | None) -> Loaded:
    loaded = Loaded(None, sources={file: text})
    spec, found = parse_collecting(text, file)
    loaded.spec = spec
    loaded.diagnostics += found
    if spec is not None:
        _load_uses(spec, base, loaded, chain=[_identity(file, base)], seen=set())
    return loaded


def _identity(file: str, base: Path | None) -> str:
    path = Path(file)
    return str(path.resolve()) if path.is_file() else file


def _load_uses(
    spec: ast.SpecAST, base: Path | None, loaded: Loaded, chain: list[str], seen: set[str]
) -> None:
    for decl in spec.decls:
        if not isinstance(decl, ast.Use):
            continue
        target = _find_use(decl, base)
        if target is None:
            loaded.diagnostics.append(_not_found(decl, base))
            continue
        identity = str(target.resolve())
        if identity in chain:
            cycle = " -> ".join(Path(c).name for c in [*chain[chain.index(identity) :], identity])
            loaded.diagnostics.append(
                Diagnostic(
                    "E105",
                    f"`use` forms a cycle: {cycle}",
                    decl.span,
                    fix="move the shared defs into a third spec that both use",
                )
            )
            continue
        if identity in seen:
            continue
        seen.add(identity)
        name = display_name(target)
        text = target.read_text()
        loaded.sources[name] = text
        used, found = parse_collecting(text, name)
        loaded.diagnostics += found
        if used is not None:
            loaded.used.append(used)
            _load_uses(used, target.parent, loaded, [*chain, identity], seen)


def _find_use(decl: ast.Use, base: Path | None) -> Path | None:
    if decl.is_path:
        path = (base or Path.cwd()) / decl.target
        return path if path.is_file() else None
    return stdlib_index().get(decl.target)


def _not_found(decl: ast.Use, base: Path | None) -> Diagnostic:
    if decl.is_path:
        where = (base or Path.cwd()) / decl.target
        return Diagnostic("E105", f'`use "{decl.target}"`: no file {where}', decl.span)
    import difflib

    close = difflib.get_close_matches(decl.target, list(stdlib_index()), n=1)
    fix = f"use {close[0]}" if close else None
    return Diagnostic(
        "E105",
        f"`use {decl.target}`: no spec of that name in the standard library",
        decl.span,
        fix=fix,
    )


__all__ = ["Loaded", "load_text", "resolve_reference", "display_name", "Span"]
