"""Derived inputs: an input whose default is an expression of other inputs.

    input logits : float[B, T, V] grad = matmul(hidden, head, dim=H)
    input logp   : float[B, T] grad    = gather(log_softmax(logits, dim=V), actions, dim=V)

A caller passes `logp`, or `logits` (and `actions`), or `hidden` and `head`: whatever is not
passed is computed from what is. One spec then serves per-token log-probs, logits and a
fused linear head, its formula written once.

Which derived inputs a call computes is its *variant*. A variant is built like a static
choice: its spec is the written one with each computed input turned into a `let` of its
expression, and the inputs only a derivation reads dropped when that derivation is not
computed (`hidden` and `head` when `logits` is passed). Building it checks that each
expression gives the dtype and dims its input declares.

What a spec reads is read under its static choices: an input that only branches of a
`select` the choices leave out read (the lengths `sigmoid_norm` needs, when the loss type is
`sigmoid`; the explicit negatives of InfoNCE, when they are in-batch) is neither computed
nor asked for.
"""

from __future__ import annotations

from dataclasses import replace

from lossdsl.diagnostics import Diagnostic
from lossdsl.ir.model import Derivations, SpecIR
from lossdsl.syntax import ast


def is_derived(decl: ast.InputDecl) -> bool:
    return decl.default is not None and _number(decl.default) is None


def derived_inputs(spec: ast.SpecAST) -> dict[str, ast.InputDecl]:
    return {d.name: d for d in spec.decls if isinstance(d, ast.InputDecl) and is_derived(d)}


def derivations(spec: ast.SpecAST, choices: dict[str, str] | None = None) -> Derivations:
    """What each derived input's expression reads, and what the rest of the spec reads, under
    the static choices (`choices` overrides the declared ones)."""
    chosen = _chosen(spec, choices or {})
    reads = {
        name: tuple(sorted(_names(decl.default, chosen)))
        for name, decl in derived_inputs(spec).items()
        if decl.default is not None
    }
    inputs = tuple(d.name for d in spec.decls if isinstance(d, ast.InputDecl))
    fallback = {
        name: value
        for name, decl in derived_inputs(spec).items()
        if decl.fallback is not None and (value := _number(decl.fallback)) is not None
    }
    outside = _read_outside(spec, chosen)
    unchosen = _read_outside(spec, None) - outside
    return Derivations(
        reads=reads,
        outside=tuple(sorted(outside)),
        inputs=inputs,
        fallback=fallback,
        unchosen=tuple(sorted(unchosen)),
    )


def variant(
    spec: ast.SpecAST, computed: frozenset[str], choices: dict[str, str] | None = None
) -> ast.SpecAST:
    """The spec a call computing `computed` runs: those inputs become lets; inputs that only
    derivations read are left out unless a computed derivation reads them, and so are derived
    inputs nothing reads."""
    kept = derivations(spec, choices).kept_inputs(computed)
    decls: list[ast.Decl] = []
    for decl in spec.decls:
        if isinstance(decl, ast.InputDecl) and decl.name in computed and decl.default is not None:
            decls.append(ast.ValueDecl("let", decl.name, decl.default, decl.span, decl.name_span))
        elif isinstance(decl, ast.InputDecl):
            if decl.name in kept:
                decls.append(_passed(decl) if is_derived(decl) else decl)
        else:
            decls.append(decl)
    return replace(spec, decls=tuple(decls))


def _passed(decl: ast.InputDecl) -> ast.InputDecl:
    """A derived input the call passes, or, with a fallback, may leave out (its number)."""
    if decl.fallback is None:
        return replace(decl, default=None)
    return replace(decl, default=decl.fallback, fallback=None)


def check_types(spec: ast.SpecAST, ir: SpecIR, computed: frozenset[str]) -> list[Diagnostic]:
    """Each computed input's expression has the dtype and dims the input declares (E200,
    E201 at the expression)."""
    found = []
    lets = {v.name: v.node for v in ir.lets}
    for name in sorted(computed):
        decl = derived_inputs(spec)[name]
        if name not in lets or decl.default is None:
            continue
        got = ir.node(lets[name]).type
        declared = tuple(d.value for d in decl.dims)
        kind = {
            "float": "float",
            "f64": "float",
            "f32": "float",
            "bf16": "float",
            "f16": "float",
            "int": "int",
            "bool": "bool",
        }.get(decl.dtype)
        shown = f"{decl.dtype}[{', '.join(str(d) for d in declared)}]"
        if got.kind != kind:
            found.append(
                Diagnostic(
                    "E201",
                    f"input `{name}` is declared {shown}, but the expression that derives "
                    f"it gives {got}",
                    decl.default.span,
                )
            )
        elif tuple(got.dims) != declared:
            found.append(
                Diagnostic(
                    "E200",
                    f"input `{name}` is declared {shown}, but the expression that derives "
                    f"it gives {got}",
                    decl.default.span,
                    fix=f"derive a value of dims [{', '.join(str(d) for d in declared)}]",
                )
            )
    return found


def _chosen(spec: ast.SpecAST, overrides: dict[str, str]) -> dict[str, str]:
    """The value of each static choice: the declared one unless overridden."""
    return {
        d.name: overrides.get(d.name, d.choice)
        for d in spec.decls
        if isinstance(d, ast.ParamDecl) and d.value is None and d.choice is not None
    }


def _read_outside(spec: ast.SpecAST, chosen: dict[str, str] | None) -> set[str]:
    """Names read by params, lets, terms, metrics and the objective (not by derivations),
    under the static choices `chosen` (every branch of every `select` when None)."""
    names: set[str] = set()
    for decl in spec.decls:
        if isinstance(decl, ast.ParamDecl) and decl.value is not None:
            names |= _names(decl.value, chosen)
        elif isinstance(decl, ast.ValueDecl):
            names |= _names(decl.value, chosen)
        elif isinstance(decl, ast.Minimize):
            names |= _names(decl.objective, chosen)
    return names


def _names(expression: ast.Expr, chosen: dict[str, str] | None) -> set[str]:
    """The names an expression reads; of a `select` of a static choice, the chosen branch."""
    found: set[str] = set()
    stack: list[ast.Expr] = [expression]
    while stack:
        e = stack.pop()
        if isinstance(e, ast.Name):
            found.add(e.id)
        elif isinstance(e, ast.Unary):
            stack.append(e.operand)
        elif isinstance(e, ast.Binary):
            stack += [e.left, e.right]
        elif isinstance(e, ast.Call) and (branch := _chosen_branch(e, chosen)) is not None:
            stack.append(branch)
        elif isinstance(e, ast.Call):
            stack += [*e.args, *(k.value for k in e.kwargs)]
        elif isinstance(e, ast.ListExpr):
            stack += list(e.items)
    return found


def _chosen_branch(call: ast.Call, chosen: dict[str, str] | None) -> ast.Expr | None:
    """The branch `select(choice, …)` keeps, when the call is one and has it."""
    if (
        chosen is None
        or call.func != "select"
        or len(call.args) != 1
        or not isinstance(call.args[0], ast.Name)
    ):
        return None
    value = chosen.get(call.args[0].id)
    return next((k.value for k in call.kwargs if k.name == value), None)


def _number(e: ast.Expr) -> float | None:
    if isinstance(e, ast.Number):
        return e.value
    if isinstance(e, ast.Bool):
        return float(e.value)
    if isinstance(e, ast.Name) and e.id == "inf":
        return float("inf")
    if isinstance(e, ast.Unary) and e.op == "-":
        inner = _number(e.operand)
        return None if inner is None else -inner
    return None
