"""The front end in one call: text -> AST -> IR -> passes, collecting every diagnostic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lossdsl.diagnostics import Diagnostic, LossSpecError, has_errors
from lossdsl.ir import SpecIR, build
from lossdsl.ir.derived import check_types, derivations, derived_inputs, variant
from lossdsl.ir.loader import Loaded, display_name, load_text, resolve_reference
from lossdsl.passes.cse import share_common_subexpressions
from lossdsl.passes.hazards import find_hazards
from lossdsl.passes.properties import prove_properties
from lossdsl.passes.rewrites import rewrite_for_stability
from lossdsl.passes.suppress import suppress
from lossdsl.syntax import ast

Pass = Callable[[SpecIR], tuple[SpecIR, list[Diagnostic]]]

# The passes, in order. Each is a pure function `ir -> (ir, diagnostics)`.
PIPELINE: list[Pass] = [
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
) -> Checked:
    """Check a spec's text. `computed` names the derived inputs to compute (a variant,
    ir/derived.py); by default the spec as written is checked, with its derived inputs
    passed, and the variant that computes every one of them too (their diagnostics are
    reported with the first's; the IR returned is the first's)."""
    loaded = load_text(text, file, base)
    diagnostics = list(loaded.diagnostics)
    ir = None
    if loaded.spec is not None and not has_errors(diagnostics):
        variants = [computed] if computed is not None else _variants_to_check(loaded.spec)
        for index, variant in enumerate(variants):
            found_ir, found = _checked_variant(loaded, variant, choices)
            diagnostics += [d for d in found if d not in diagnostics]
            ir = found_ir if index == 0 else ir
    diagnostics = _sorted(suppress(diagnostics, loaded.sources))  # `# lossdsl: allow` comments
    if ir is not None:  # kept with the IR (and its cache), so every load can repeat them
        warnings = [d for d in diagnostics if d.severity == "warning"]
        rendered = tuple(d.render(loaded.sources.get(d.span.file)) for d in warnings)
        ir = ir.model_copy(update={"warnings": rendered})
    return Checked(ir, diagnostics, loaded.sources, file)


def _variants_to_check(spec: ast.SpecAST) -> list[frozenset[str]]:
    every = frozenset(derived_inputs(spec))
    return [frozenset(), every] if every else [frozenset()]


def _checked_variant(
    loaded: Loaded, computed: frozenset[str], choices: dict[str, str] | None
) -> tuple[SpecIR | None, list[Diagnostic]]:
    assert loaded.spec is not None
    spec = variant(loaded.spec, computed)
    ir, diagnostics = build(spec, loaded.used, choices)
    if ir is None:
        return None, diagnostics
    diagnostics += check_types(loaded.spec, ir, computed)
    if has_errors(diagnostics):
        return None, diagnostics
    ir = ir.model_copy(
        update={
            "sources": loaded.sources,
            "derivations": derivations(loaded.spec),
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
    computed: frozenset[str] | None = None,
) -> Checked:
    """Check a spec given as a path or a standard-library name."""
    path = ref if isinstance(ref, Path) else resolve_reference(ref)
    if path is None or not Path(path).is_file():
        from lossdsl.diagnostics import UNKNOWN_SPAN

        message = f"no spec `{ref}`: not a file, nor a name in the standard library"
        return Checked(None, [Diagnostic("E105", message, UNKNOWN_SPAN)])
    path = Path(path)
    return check_text(path.read_text(), display_name(path), path.parent, choices, computed)


def _sorted(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(
        diagnostics, key=lambda d: (order[d.severity], d.span.file, d.span.line, d.span.col)
    )
