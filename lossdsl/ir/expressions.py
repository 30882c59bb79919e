"""Expressions to nodes: names resolved in their scope, operators and calls applied with
the types the op table gives (E101, E200, E201, E104, E204).

Expressions may nest thousands deep, so the walk is written as generators run by
`trampoline.run` rather than as recursion; calls (ops, defs, `select`) are in calls.py.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any

from lossdsl.diagnostics import Span
from lossdsl.ir import trampoline
from lossdsl.ir.calls import Calls
from lossdsl.ir.declarations import BUILTIN_VALUES, Symbols
from lossdsl.ir.graph import INT64_LIMIT, SCALAR_FLOAT, DimAlias, Failed, Graph, Scope
from lossdsl.ir.state import States
from lossdsl.ir.trampoline import Walk
from lossdsl.ir.types import DimError, DtypeError, ShapeError, TensorType, format_dims
from lossdsl.ops import BINARY_OPERATORS, CALLABLE_NAMES, OPS, RESERVED, UNARY_OPERATORS, Op
from lossdsl.ops.op import MASK
from lossdsl.syntax import ast

OPERATOR_SPELLING = {
    op: f"`{symbol}`" for symbol, op in [*BINARY_OPERATORS.items(), *UNARY_OPERATORS.items()]
}


class Expressions:
    """Builds expressions into `graph`, reading names from `symbols`; `value_of` gives the
    node of a param, let, term or metric."""

    def __init__(
        self,
        graph: Graph,
        symbols: Symbols,
        value_of: Callable[[str, Span, Scope], int | None],
    ):
        self.graph = graph
        self.symbols = symbols
        self.value_of = value_of
        self.calls = Calls(self)
        self.states = States(self)

    def expr(self, e: ast.Expr, scope: Scope) -> int:
        """Build an expression; raises Failed after reporting an error inside it."""
        return trampoline.run(self.walk(e, scope))

    def sub(self, e: ast.Expr, scope: Scope) -> int | Walk[int]:
        """What a walk yields for a sub-expression: a leaf's node at once, else its walk."""
        if isinstance(e, ast.Number | ast.Bool | ast.Name):
            return self.leaf(e, scope)
        return self.walk(e, scope)

    def walk(self, e: ast.Expr, scope: Scope) -> Walk[int]:
        """Build an expression, yielding its sub-expressions to `trampoline.run`."""
        if isinstance(e, ast.Unary):
            operand = yield self.sub(e.operand, scope)
            return self.apply(
                OPS[UNARY_OPERATORS[e.op]], [operand], {}, e.span, scope, [e.operand.span]
            )
        if isinstance(e, ast.Binary):
            left = yield self.sub(e.left, scope)
            right = yield self.sub(e.right, scope)
            spans = [e.left.span, e.right.span]
            return self.apply(OPS[BINARY_OPERATORS[e.op]], [left, right], {}, e.span, scope, spans)
        if isinstance(e, ast.Call):
            return (yield from self.calls.call(e, scope))
        if isinstance(e, ast.ListExpr):
            self.graph.error(
                "E201",
                "a list is only allowed as `dim=[…]` or in piecewise(…)",
                e.span,
                scope=scope,
            )
            raise Failed
        return self.leaf(e, scope)

    def leaf(self, e: ast.Expr, scope: Scope) -> int:
        if isinstance(e, ast.Number):
            if math.isinf(e.value):
                self.graph.error(
                    "E204",
                    "this number is too large for a float (the largest is about 1.8e308)",
                    e.span,
                    fix="write `inf` for infinity",
                    scope=scope,
                )
                raise Failed
            kind = "int" if e.is_int else "float"
            return self.graph.add(
                "const",
                (),
                {"value": e.value},
                TensorType(kind, (), weak=True),  # type: ignore[arg-type]
                e.span,
                scope=scope,
            )
        if isinstance(e, ast.Bool):
            return self.graph.add(
                "const",
                (),
                {"value": e.value},
                TensorType("bool", (), weak=True),
                e.span,
                scope=scope,
            )
        if isinstance(e, ast.Name):
            return self.name(e, scope)
        raise AssertionError(f"not a leaf: {type(e).__name__}")

    def name(self, e: ast.Name, scope: Scope) -> int:
        if e.id in scope.locals:
            bound = scope.locals[e.id]
            if isinstance(bound, DimAlias):
                self.graph.error(
                    "E201",
                    f"`{e.id}` names the dim {bound.name}, not a value",
                    e.span,
                    fix=f"size({e.id})",
                    scope=scope,
                )
                raise Failed
            return bound
        if e.id == "step":
            return self.symbols.step_node
        if e.id == "world_size":
            return self.graph.add("world_size", (), {}, SCALAR_FLOAT, e.span, scope=scope)
        if e.id in ("inf", "pi"):
            value = math.inf if e.id == "inf" else math.pi
            return self.graph.add(
                "const",
                (),
                {"value": value},
                TensorType("float", (), weak=True),
                e.span,
                scope=scope,
            )
        if scope.in_def is not None and (e.id in self.symbols.values):
            self.graph.error(
                "E101",
                f"def `{scope.in_def}` cannot see `{e.id}`: a def sees only its "
                "arguments, other defs and built-ins",
                e.span,
                fix=f"pass `{e.id}` as an argument of `{scope.in_def}`",
                scope=scope,
            )
            raise Failed
        if e.id in self.symbols.choices:
            self.graph.error(
                "E201",
                f"`{e.id}` is a static choice; use it as select({e.id}, …)",
                e.span,
                scope=scope,
            )
            raise Failed
        decl = self.symbols.values.get(e.id)
        if decl is not None:
            if scope.params_only and not _readable_in_coefficient(decl, scope):
                allowed = "numbers, params and step"
                if scope.adaptive:
                    allowed = "numbers, params, learned params, states and step"
                self.graph.error(
                    scope.misuse_code,
                    f"`{e.id}` is {_what(decl)}; this value may only use {allowed}",
                    e.span,
                    scope=scope,
                )
                raise Failed
            node = self.value_of(e.id, e.span, scope)
            if node is None:
                raise Failed
            return node
        self.unknown_name(e.id, e.span, scope)
        raise Failed

    def unknown_name(self, name: str, span: Span, scope: Scope, callable_: bool = False) -> None:
        if name in RESERVED:
            self.graph.error(
                "E101",
                f"`{name}` is not available yet",
                span,
                scope=scope,
                notes=(f"note: {RESERVED[name]}",),
            )
            return
        if name in self.symbols.dims and not callable_:
            self.graph.error(
                "E101", f"`{name}` is a dim, not a value", span, fix=f"size({name})", scope=scope
            )
            return
        if callable_:
            known = [*CALLABLE_NAMES, *self.symbols.defs]
            what = "op or def"
        else:
            known = [
                *scope.locals,
                *(self.symbols.values if scope.in_def is None else ()),
                *BUILTIN_VALUES,
            ]
            what = "name"
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else None
        self.graph.error("E101", f"unknown {what} `{name}`", span, fix=fix, scope=scope)

    # ---- an op applied to built operands ---------------------------------------------

    def apply(
        self,
        op: Op,
        args: list[int],
        attrs: dict[str, Any],
        span: Span,
        scope: Scope,
        arg_spans: list[Span] | None = None,
    ) -> int:
        args = self.widen_large_integers(op, args, attrs, scope)
        types = [self.graph.type_of(a) for a in args]
        if scope.params_only and op.group in ("reduction", "distribution"):
            self.graph.error(
                "E201",
                f"{op.name}() needs tensors; a param's value or a weight may only "
                "use numbers, params, step and schedules",
                span,
                scope=scope,
            )
            raise Failed
        where = arg_spans or [span] * len(args)
        for arg, t, arg_span in zip(self.present_args(op, attrs), types, where, strict=False):
            if arg.kind == MASK and t.kind != "bool":
                self.graph.error(
                    "E201",
                    f"`{arg.name}` of {op.name}() must be bool, got {t}",
                    arg_span,
                    fix=f"compare it, e.g. `{arg.name}=x > 0`",
                    scope=scope,
                )
                raise Failed
        try:
            kind = op.dtype(types, {**attrs, "_op": op.name})
            dims = op.shape(types, attrs)
        except ShapeError as error:
            shown = ", ".join(
                f"{self.graph.describe(a)} is {t}" for a, t in zip(args, types, strict=False)
            )
            self.graph.error(
                "E200",
                f"shapes do not broadcast in {op.name}: {error}",
                span,
                notes=(shown,),
                fix=_broadcast_fix(types),
                scope=scope,
            )
            raise Failed from None
        except DimError as error:
            self.graph.error("E104", f"{op.name}(): {error}", span, scope=scope)
            raise Failed from None
        except DtypeError as error:
            at = where[error.arg] if error.arg is not None and error.arg < len(where) else span
            self.graph.error("E201", f"{op.name}(): {error}", at, scope=scope)
            raise Failed from None
        return self.graph.add(
            op.name, tuple(args), attrs, TensorType(kind, dims), span, scope=scope
        )

    def widen_large_integers(
        self, op: Op, args: list[int], attrs: dict[str, Any], scope: Scope
    ) -> list[int]:
        """An integer literal too large for int64 (|n| ≥ 2^63) is fine where the op computes
        in floats (it becomes a float literal), and an error (E204) where it would stay an
        integer: torch cannot hold it, and the call would fail at run time."""
        large = [i for i, a in enumerate(args) if self.is_large_integer(a)]
        if not large:
            return args
        types = [self.graph.type_of(a) for a in args]
        try:
            kind = op.dtype(types, {**attrs, "_op": op.name})
        except DtypeError:
            return args  # reported by `apply`
        others = [t for i, t in enumerate(types) if i not in large]
        if kind == "float" or any(t.kind == "float" for t in others):
            return [self.as_float(a) if i in large else a for i, a in enumerate(args)]
        literal = self.graph.nodes[args[large[0]]]
        spelling = {**OPERATOR_SPELLING}.get(op.name, f"{op.name}()")
        self.graph.error(
            "E204",
            f"the integer {literal.attrs['value']:.6g} is too large for int64 (|n| < 2^63), "
            f"and {spelling} would compute with it as an integer",
            literal.span,
            fix="write it as a float (`1e39`) if a float is meant",
            scope=scope,
        )
        raise Failed

    def is_large_integer(self, node_id: int) -> bool:
        node = self.graph.nodes[node_id]
        return (
            node.op == "const"
            and node.type.kind == "int"
            and abs(node.attrs["value"]) >= INT64_LIMIT
        )

    def as_float(self, node_id: int) -> int:
        node = self.graph.nodes[node_id]
        value = float(node.attrs["value"])
        return self.graph.add(
            "const", (), {"value": value}, TensorType("float", (), weak=True), node.span
        )

    def present_args(self, op: Op, attrs: dict[str, Any]) -> list:
        present = attrs.get("present")
        return [a for a in op.tensor_args() if present is None or a.name in present]


def _readable_in_coefficient(decl: object, scope: Scope) -> bool:
    """Whether a scalar of numbers, params and `step` (a param's value, a state's start, a
    weight) may read `decl`: a param; a learned param or a state only in a weight."""
    if isinstance(decl, ast.ParamDecl):
        return not decl.learned or scope.adaptive
    return isinstance(decl, ast.StateDecl) and scope.adaptive


def _what(decl: object) -> str:
    if isinstance(decl, ast.InputDecl):
        return "an input"
    if isinstance(decl, ast.ParamDecl):
        return "a learned param"
    if isinstance(decl, ast.StateDecl):
        return "a state"
    assert isinstance(decl, ast.ValueDecl)
    return f"a {decl.kind}"


def _broadcast_fix(types: list[TensorType]) -> str | None:
    """For the classic per-sequence bug (`[B, T] * [B]`), suggest the trailing 1."""
    if len(types) != 2:
        return None
    a, b = sorted(types, key=lambda t: len(t.dims), reverse=True)
    if b.dims and len(a.dims) > len(b.dims) and a.dims[: len(b.dims)] == b.dims:
        padded = format_dims((*b.dims, *([1] * (len(a.dims) - len(b.dims)))))
        return f"declare the shorter operand as {b.kind}{padded} so it broadcasts per row"
    return None
