"""The Python API: `load`, `parse`, `check`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lossdsl.diagnostics import Diagnostic, LossSpecError
from lossdsl.ir import SpecIR
from lossdsl.passes import Checked, check_reference, check_text
from lossdsl.syntax import ast
from lossdsl.syntax.parser import parse as _parse


def parse(text: str, file: str = "<string>") -> ast.SpecAST:
    """The AST of a spec's text; raises `LossSpecError` on syntax errors."""
    return _parse(text, file)


def check(spec: str | Path) -> list[Diagnostic]:
    """Every diagnostic of a spec (a path or a standard-library name)."""
    return check_reference(spec).diagnostics


def build_ir(spec: str | Path, choices: dict[str, str] | None = None) -> SpecIR:
    return check_reference(spec, choices).raise_for_errors()


def load(
    spec: str | Path,
    params: dict[str, Any] | None = None,
    compile: bool = False,
    backend: str = "inductor",
    mode: str | None = None,
) -> Any:
    """Compile a spec (a path or a standard-library name) into a `LossModule`."""
    from lossdsl.backend.module import LossModule

    checked = _check_for_load(spec, params)
    ir = checked.raise_for_errors()

    def rebuild(choices: dict[str, str]) -> SpecIR:
        return _check_for_load(spec, choices).raise_for_errors()

    return LossModule(ir, rebuild, params=params, compile=compile, backend=backend, mode=mode)


def load_text(
    text: str,
    params: dict[str, Any] | None = None,
    compile: bool = False,
    backend: str = "inductor",
    mode: str | None = None,
    file: str = "<string>",
) -> Any:
    """Like `load`, for a spec given as text."""
    from lossdsl.backend.module import LossModule

    def rebuild(choices: dict[str, str]) -> SpecIR:
        return check_text(text, file, Path.cwd(), choices).raise_for_errors()

    ir = rebuild({})
    return LossModule(ir, rebuild, params=params, compile=compile, backend=backend, mode=mode)


def _check_for_load(spec: str | Path, params: dict[str, Any] | None) -> Checked:
    choices = {k: v for k, v in (params or {}).items() if isinstance(v, str)}
    return check_reference(spec, choices)


__all__ = ["parse", "check", "load", "load_text", "build_ir", "LossSpecError"]
