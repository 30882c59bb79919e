"""The front end in one call: text -> AST -> IR -> passes, collecting every diagnostic."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lossdsl.diagnostics import UNKNOWN_SPAN, Diagnostic, LossSpecError, has_errors
from lossdsl.ir import SpecIR, build
from lossdsl.ir.derived import check_types, derivations, derived_inputs, variant
from lossdsl.ir.loader import Loaded, display_name, load_text, not_found, unreadable
from lossdsl.passes.collectives import check_global_sums
from lossdsl.passes.cse import share_common_subexpressions
from lossdsl.passes.hazards import find_hazards
from lossdsl.passes.properties import prove_properties
from lossdsl.passes.rewrites import rewrite_for_stability
from lossdsl.passes.slicing import means_as_sums, plan_slices
from lossdsl.passes.suppress import suppress
from lossdsl.spec_files import Reference, SpecFile, SpecFileError, read_spec_file
from lossdsl.syntax import ast

Pass = Callable[[SpecIR], tuple[SpecIR, list[Diagnostic]]]

# The passes, in order. Each is a pure function `ir -> (ir, diagnostics)`.
PIPELINE: list[Pass] = [
    check_global_sums,
    rewrite_for_stability,
    find_hazards,
    prove_properties,
    share_common_subexpressions,
]


@dataclass
class Checked:
    ir: SpecIR | None
    diagnostics: list[Diagnostic]
    sources: dict[str, str] = field(default_factory=dict)
    file: str = "<string>"
    files: list[SpecFile] = field(default_factory=list)  # every file read, the spec's first

    @property
    def ok(self) -> bool:
        return self.ir is not None and not has_errors(self.diagnostics)

    def raise_for_errors(self) -> SpecIR:
        if not self.ok or self.ir is None:
            raise LossSpecError(_sorted(self.diagnostics), self.sources)
        return self.ir


def check_text(
    text: str,
    file: str = "<string>",
    base: Path | None = None,
    choices: dict[str, str] | None = None,
    computed: frozenset[str] | None = None,
    top: SpecFile | None = None,
    sliced: bool = False,
) -> Checked:
    """Check a spec's text (read from the file `top`, when it was); `use`s are looked up
    from the folder `base` (the working directory when None). `computed` names the derived
    inputs to compute (a variant, ir/derived.py); by default the spec as written is checked,
    with its derived inputs passed, and the variant that computes every one of them too
    (their diagnostics are reported with the first's; the IR returned is the first's).
    `sliced` also asks whether the spec can run in slices (`chunk=`, E205), in the variant
    that computes every derived input."""
    with _collector_paused():
        return _check_text(text, file, base, choices, computed, top, sliced)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a spec is checked: checking builds
    many objects that all live until the end (AST, nodes, facts), and the collector would
    scan them again and again, which makes a large spec's check slower than linear (30-40%
    at 8,000 declarations). What is garbage is collected once the check is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _check_text(
    text: str,
    file: str,
    base: Path | None,
    choices: dict[str, str] | None,
    computed: frozenset[str] | None,
    top: SpecFile | None,
    sliced: bool,
) -> Checked:
    loaded = load_text(text, file, base, top)
    diagnostics = list(loaded.diagnostics)
    ir = None
    if loaded.spec is not None and not has_errors(diagnostics):
        variants = [computed] if computed is not None else _variants_to_check(loaded.spec)
        last = None
        for index, variant in enumerate(variants):
            last, found = _checked_variant(loaded, variant, choices)
            diagnostics += [d for d in found if d not in diagnostics]
            ir = last if index == 0 else ir
        if sliced and last is not None:
            diagnostics += plan_slices(means_as_sums(last))[1]
    diagnostics = _sorted(suppress(diagnostics, loaded.sources))  # `# lossdsl: allow` comments
    if ir is not None:  # kept with the IR (and its cache), so every load can repeat them
        warnings = [d for d in diagnostics if d.severity == "warning"]
        rendered = tuple(d.render(loaded.sources.get(d.span.file)) for d in warnings)
        ir = ir.model_copy(update={"warnings": rendered})
    return Checked(ir, diagnostics, loaded.sources, file, loaded.files)


def _variants_to_check(spec: ast.SpecAST) -> list[frozenset[str]]:
    every = frozenset(derived_inputs(spec))
    return [frozenset(), every] if every else [frozenset()]


def _checked_variant(
    loaded: Loaded, computed: frozenset[str], choices: dict[str, str] | None
) -> tuple[SpecIR | None, list[Diagnostic]]:
    assert loaded.spec is not None
    spec = variant(loaded.spec, computed, choices)
    ir, diagnostics = build(spec, loaded.used, choices)
    if ir is None:
        return None, diagnostics
    diagnostics += check_types(loaded.spec, ir, computed)
    if has_errors(diagnostics):
        return None, diagnostics
    ir = ir.model_copy(
        update={
            "sources": loaded.sources,
            "derivations": derivations(loaded.spec, choices),
            "computed": tuple(sorted(computed)),
        }
    )
    for run_pass in PIPELINE:
        ir, found = run_pass(ir)
        diagnostics += found
    return ir, diagnostics


def check_reference(
    ref: str | Path,
    choices: dict[str, str] | None = None,
    base: Path | None = None,
    computed: frozenset[str] | None = None,
    sliced: bool = False,
) -> Checked:
    """Check a spec named by a path or by a standard-library name (`ppo`, `rl/ppo`): a file at
    that path, from `base` (the working directory when None), wins over a standard spec."""
    reference = Reference(str(ref), base or Path.cwd())
    path = reference.locate()
    if path is None:
        missing = not_found(reference, UNKNOWN_SPAN, f"no spec `{ref}`", in_use=False)
        return Checked(None, [missing])
    name = display_name(path)
    try:
        spec = read_spec_file(path, reference)
    except SpecFileError as error:
        return Checked(None, [unreadable(error, name, UNKNOWN_SPAN)], file=name)
    return check_text(spec.text, name, path.parent, choices, computed, top=spec, sliced=sliced)


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(
        diagnostics, key=lambda d: (order[d.severity], d.span.file, d.span.line, d.span.col)
    )
