"""The Python API: `load`, `parse`, `check`."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossdsl import cache
from lossdsl.diagnostics import Diagnostic, LossSpecError
from lossdsl.ir.model import SpecIR
from lossdsl.quiet_torch import import_torch
from lossdsl.spec_files import Reference

if TYPE_CHECKING:
    from lossdsl.syntax import ast

# The parser and checker are imported where they are used: a load served from the IR cache
# never imports them (nor lark).


def parse(text: str, file: str = "<string>") -> ast.SpecAST:
    """The AST of a spec's text (a leading byte-order mark is dropped, as in files); raises
    `LossSpecError` on syntax errors."""
    from lossdsl.syntax.parser import parse as parse_text

    return parse_text(text.removeprefix("\ufeff"), file)  # a byte-order mark read as text


def check(spec: str | Path) -> list[Diagnostic]:
    """Every diagnostic of a spec (a path or a standard-library name)."""
    from lossdsl.passes import check_reference

    return check_reference(spec).diagnostics


def build_ir(
    spec: str | Path,
    choices: dict[str, str] | None = None,
    computed: frozenset[str] = frozenset(),
) -> SpecIR:
    """The checked IR of a spec (of the variant computing the derived inputs `computed`);
    raises `LossSpecError` with every error found."""
    from lossdsl.passes import check_reference

    return check_reference(spec, choices, computed=computed).raise_for_errors()


def load(
    spec: str | Path,
    params: dict[str, Any] | None = None,
    compile: bool = False,
    backend: str = "inductor",
    mode: str | None = None,
    chunk: int | str | None = None,
    group: Any = None,
) -> Any:
    """Compile a spec into a `LossModule`: a path, else a standard-library name (`"ppo"` or
    `"rl/ppo"`); a file at that path, from the working directory, wins over a standard spec.

    `chunk=N` runs it in slices of N rows (`"auto"`: a size chosen from the shapes) so that
    no `[rows, V]` intermediate larger than a slice is alive (docs/language.md, "Memory at
    vocabulary scale"). `group`: the torch.distributed process group `global_sum` and
    `world_size` refer to (the default group when omitted; docs/distributed.md). A `.pt2`
    written by `lossdsl compile --export` loads too (its graph is already built)."""
    import_torch()
    if str(spec).endswith(".pt2"):
        from lossdsl.backend.export import load_exported

        return load_exported(Path(spec), params)

    base = Path.cwd()  # a rebuild (a new static choice) finds the same file after a chdir

    def rebuild(choices: dict[str, str], computed: frozenset[str] = frozenset()) -> SpecIR:
        return _cached_ir(spec, choices, backend, mode, base, computed)

    return _module(rebuild, params, compile, backend, mode, chunk, group)


def load_text(
    text: str,
    params: dict[str, Any] | None = None,
    compile: bool = False,
    backend: str = "inductor",
    mode: str | None = None,
    file: str = "<string>",
    chunk: int | str | None = None,
    group: Any = None,
) -> Any:
    """Like `load`, for a spec given as text."""
    import_torch()
    from lossdsl.passes import check_text

    def rebuild(choices: dict[str, str], computed: frozenset[str] = frozenset()) -> SpecIR:
        return check_text(text, file, Path.cwd(), choices, computed).raise_for_errors()

    return _module(rebuild, params, compile, backend, mode, chunk, group)


def _module(
    rebuild: Callable[..., SpecIR],
    params: dict[str, Any] | None,
    compile: bool,
    backend: str,
    mode: str | None,
    chunk: int | str | None,
    group: Any,
) -> Any:
    from lossdsl.backend.module import LossModule

    # Built with its declared choices first: the module checks the caller's (InputError)
    # before building the spec again with them.
    ir = rebuild({})
    warn_about(ir)
    return LossModule(
        ir,
        rebuild,
        params=params,
        compile=compile,
        backend=backend,
        mode=mode,
        chunk=chunk,
        group=group,
    )


class LossSpecWarning(UserWarning):
    """A hazard `lossdsl check` found in a spec that still builds (W300–W402)."""


def warn_about(ir: SpecIR) -> None:
    """Repeat the check's warnings where a spec is loaded: users who never run `lossdsl
    check` still hear about a log of zero. Silence them in the spec, or with `warnings`."""
    for message in ir.warnings:
        warnings.warn(message, LossSpecWarning, stacklevel=3)


def _cached_ir(
    spec: str | Path,
    choices: dict[str, str],
    backend: object,
    mode: str | None,
    base: Path,
    computed: frozenset[str] = frozenset(),
) -> SpecIR:
    """The checked IR, from the on-disk cache when exactly these files were built before."""
    variant = dict(choices)
    if computed:  # a variant of derived inputs is keyed like a static choice
        variant[" derived inputs computed"] = ",".join(sorted(computed))
    ir = cache.load_ir(Reference(str(spec), base), variant, backend, mode)
    if ir is None:
        from lossdsl.passes import check_reference

        checked = check_reference(spec, choices, base, computed)
        ir = checked.raise_for_errors()
        cache.store_ir(checked.files, variant, backend, mode, ir)
    return ir


__all__ = ["parse", "check", "load", "load_text", "build_ir", "LossSpecError", "LossSpecWarning"]
