"""`lossdsl new NAME --from ppo`: a new spec file, a copy of a standard (or any) spec under a
new name, or a small template to start from."""

from __future__ import annotations

import re
from pathlib import Path

from lossdsl.spec_files import Reference, SpecFileError, read_spec_file
from lossdsl.syntax import ast
from lossdsl.tools import ToolError

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

TEMPLATE = '''loss {name}
"""One line on what this loss is for.

What it computes, with the formula and the paper or library it follows.
"""

input pred   : float[N] grad
input target : float[N]

param weight = 1.0 in [0, inf)

let residual = pred - target

term error = mean(square(residual))

minimize weight * error

metric max_error = max(abs(residual))
'''


def new_spec(name: str, source: str | None = None, base: Path | None = None) -> str:
    """The text of a spec named `name`: `source` (a standard name or a path) renamed, or the
    template when `source` is None."""
    if not NAME.match(name):
        raise ToolError(
            f"a spec's name is a name such as my_ppo (letters, digits, _), not {name!r}"
        )
    if source is None:
        return TEMPLATE.format(name=name)
    from lossdsl.api import parse
    from lossdsl.diagnostics import LossSpecError

    reference = Reference(source, base or Path.cwd())
    path = reference.locate()
    if path is None:
        raise ToolError(f"--from {source}: no such spec (`lossdsl list` shows the standard ones)")
    try:
        text = read_spec_file(path, reference).text
        spec = parse(text, str(path))
    except (SpecFileError, LossSpecError) as error:
        raise ToolError(f"--from {source}: {error}") from None
    _refuse_relative_uses(spec, source)
    return _renamed(text, spec.name_span, name)


def _refuse_relative_uses(spec: ast.SpecAST, source: str) -> None:
    """A `use "file.loss"` is relative to the spec's folder: a copy elsewhere would lose it."""
    for decl in spec.decls:
        if isinstance(decl, ast.Use) and decl.is_path and not Path(decl.target).is_absolute():
            raise ToolError(
                f'--from {source}: it uses "{decl.target}" by a relative path, which a copy in '
                "another folder would not find; copy the file by hand"
            )


def _renamed(text: str, name_span: object, name: str) -> str:
    lines = text.split("\n")
    line, col, end = name_span.line, name_span.col, name_span.end_col  # type: ignore[attr-defined]
    lines[line - 1] = lines[line - 1][: col - 1] + name + lines[line - 1][end - 1 :]
    return "\n".join(lines)
