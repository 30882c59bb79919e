"""Diagnostics: what a check found, where, and how to fix it. Torch-free."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Span:
    """A stretch of a spec's text; lines and columns count from 1, `end_col` is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


UNKNOWN_SPAN = Span("<unknown>", 1, 1, 1, 1)


def severity_of(code: str) -> Severity:
    return {"E": "error", "W": "warning", "I": "info"}[code[0]]  # type: ignore[return-value]


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    span: Span
    fix: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def severity(self) -> Severity:
        return severity_of(self.code)

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "col": self.span.col,
            "end_line": self.span.end_line,
            "end_col": self.span.end_col,
            "fix": self.fix,
            "notes": list(self.notes),
        }

    def render(self, source: str | None = None, color: bool = False) -> str:
        """`file:line:col: CODE message`, the source line with carets, notes and the fix."""
        head = f"{self.span}: {self.code} {self.message}"
        if color:
            tint = {"error": "31", "warning": "33", "info": "36"}[self.severity]
            head = f"\x1b[1m{self.span}:\x1b[0m \x1b[1;{tint}m{self.code}\x1b[0m {self.message}"
        lines = [head]
        excerpt = caret_excerpt(source, self.span) if source is not None else None
        if excerpt:
            lines.append(excerpt)
        lines += [f"  {note}" for note in self.notes]
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


def caret_excerpt(source: str, span: Span) -> str:
    """The span's first line, indented, with `^` under the spanned characters."""
    text_lines = _lines(source)
    if not 1 <= span.line <= len(text_lines):
        return ""
    line = text_lines[span.line - 1]
    end = span.end_col if span.end_line == span.line else len(line) + 1
    width = max(1, end - span.col)
    return f"  {line}\n  {' ' * (span.col - 1)}{'^' * width}"


@lru_cache(maxsize=4)
def _lines(source: str) -> list[str]:
    """A source's lines, split once for all its diagnostics (thousands in a large spec)."""
    return source.splitlines()


class LossSpecError(Exception):
    """A spec that cannot be built: carries every diagnostic found, errors first."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str] | None = None):
        self.diagnostics = diagnostics
        self.sources = sources or {}
        super().__init__(self.render())

    def render(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"] or self.diagnostics
        return "\n".join(d.render(self.sources.get(d.span.file)) for d in errors)


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diagnostics)


def to_json(reports: list[dict[str, object]]) -> str:
    return json.dumps(reports, indent=2)
