"""Calls: an op's arguments bound by its signature (E103) and checked by kind (dims,
flags, numbers, schedules' numbers), a def inlined on its arguments (once per distinct
call), and `select` of a static choice keeping only the chosen branch.

Each of these is a generator of the expression walk (expressions.py): it yields the
sub-expressions it needs built and receives their nodes.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from lossdsl.diagnostics import Span
from lossdsl.ir.declarations import literal_number
from lossdsl.ir.graph import DefCall, DimAlias, Failed, Scope
from lossdsl.ir.schedules import schedule_problems
from lossdsl.ir.trampoline import Walk
from lossdsl.ir.types import TensorType
from lossdsl.ops import ELEMENTWISE_FORM, OPERATOR_ONLY, OPS, VALUE_OPS, Op
from lossdsl.ops.op import DIM, DIMS, FLAG, MASK, NEW_DIM, NUMBER, NUMBERS, SIZE, TENSOR
from lossdsl.syntax import ast

if TYPE_CHECKING:
    from lossdsl.ir.expressions import Expressions


class Calls:
    """The calls of one spec's expressions, with the def calls already inlined."""

    def __init__(self, expressions: Expressions):
        self.expressions = expressions
        self.graph = expressions.graph
        self.symbols = expressions.symbols
        self.inlined: dict[tuple, int | None] = {}  # a def call on given values -> its node

    def call(self, e: ast.Call, scope: Scope) -> Walk[int]:
        if e.func == "select":
            return (yield from self.select(e, scope))
        if e.func == "ema":
            return (yield from self.expressions.states.ema(e, scope))
        if e.func in self.symbols.defs and e.func not in OPS:
            return (yield from self.inline(e, scope))
        op_name = e.func
        if e.func in ELEMENTWISE_FORM and len(e.args) == 2 and not e.kwargs:
            op_name = ELEMENTWISE_FORM[e.func]
        op = OPS.get(op_name)
        if op is None or op_name in OPERATOR_ONLY or op_name in VALUE_OPS:
            self.expressions.unknown_name(e.func, e.func_span, scope, callable_=True)
            raise Failed
        bound = self.bind_arguments(op, e, scope)
        tensors: list[int] = []
        spans: list[Span] = []
        attrs: dict[str, Any] = {}
        failed = False
        for arg in op.args:
            value = bound.get(arg.name)
            try:
                if arg.kind in (TENSOR, MASK):
                    if value is None:
                        if arg.default is None:
                            continue
                        tensors.append(
                            self.graph.add(
                                "const",
                                (),
                                {"value": arg.default},
                                TensorType("int", (), weak=True),
                                e.span,
                                scope=scope,
                            )
                        )
                        spans.append(e.span)
                        attrs.setdefault("present", []).append(arg.name)
                        continue
                    tensors.append((yield self.expressions.sub(value, scope)))
                    spans.append(value.span)
                    attrs.setdefault("present", []).append(arg.name)
                else:
                    attrs[arg.name] = self.static_argument(
                        op, arg.kind, arg.name, value, arg.default, e, scope
                    )
            except Failed:
                failed = True
        if failed:
            raise Failed
        if "present" in attrs:
            attrs["present"] = tuple(attrs["present"])
        self.check_copies(op, attrs, bound, scope)
        if op.group == "schedule":
            self.check_schedule(op, e, bound, tensors, attrs, scope)
        return self.expressions.apply(op, tensors, attrs, e.span, scope, spans)

    def check_copies(
        self, op: Op, attrs: dict[str, Any], bound: dict[str, ast.Expr], scope: Scope
    ) -> None:
        """A new dim is a copy of one dim: `rename(x, B, K)` and `rename(y, T, K)` would give
        K two sizes (E104)."""
        for arg in op.args:
            if arg.kind != NEW_DIM or arg.name not in attrs:
                continue
            new, source, span = attrs[arg.name], attrs["dim"], bound[arg.name].span
            first = self.symbols.copied_from.setdefault(new, (source, span))
            if first[0] != source:
                self.graph.error(
                    "E104",
                    f"dim {new} is a copy of {first[0]} (at {first[1]}); it cannot also be a "
                    f"copy of {source}",
                    span,
                    fix=f"introduce another new dim for the copy of {source}",
                    scope=scope,
                )
                raise Failed

    def check_schedule(
        self,
        op: Op,
        e: ast.Call,
        bound: dict[str, ast.Expr],
        tensors: list[int],
        attrs: dict[str, Any],
        scope: Scope,
    ) -> None:
        """E204/E103 for a schedule whose number arguments give no finite value at some
        step (`exponential(0, 1, …)`, `steps=-5`, piecewise values that do not fit)."""
        given = zip(attrs.get("present", ()), tensors, strict=True)
        numbers = {name: self.graph.fold(node) for name, node in given}
        problems = schedule_problems(op.name, numbers, attrs)
        for problem in problems:
            where = bound.get(problem.arg) if problem.arg is not None else None
            span = where.span if where is not None else e.span
            self.graph.error(problem.code, problem.message, span, fix=problem.fix, scope=scope)
        if problems:
            raise Failed

    def bind_arguments(self, op: Op, e: ast.Call, scope: Scope) -> dict[str, ast.Expr]:
        names = [a.name for a in op.args]

        def wrong(message: str, span: Span) -> Failed:
            self.graph.error(
                "E103", f"{op.name}() {message}", span, fix=op.signature(), scope=scope
            )
            return Failed()

        if len(e.args) > len(names):
            raise wrong(f"takes at most {len(names)} arguments, got {len(e.args)}", e.span)
        bound: dict[str, ast.Expr] = dict(zip(names, e.args, strict=False))
        for kw in e.kwargs:
            if kw.name not in names:
                close = difflib.get_close_matches(kw.name, names, n=1)
                hint = f"; did you mean `{close[0]}=`?" if close else ""
                raise wrong(f"has no argument `{kw.name}`{hint}", kw.span)
            if kw.name in bound:
                raise wrong(f"got `{kw.name}` twice", kw.span)
            bound[kw.name] = kw.value
        missing = [a.name for a in op.args if a.required and a.name not in bound]
        if missing:
            raise wrong(f"needs `{'`, `'.join(missing)}`", e.span)
        return bound

    def static_argument(
        self,
        op: Op,
        kind: str,
        name: str,
        value: ast.Expr | None,
        default: Any,
        call: ast.Call,
        scope: Scope,
    ) -> Any:
        if value is None:
            return default
        if kind in (DIM, DIMS):
            items = value.items if (kind == DIMS and isinstance(value, ast.ListExpr)) else (value,)
            dims = tuple(self.dim_name(item, op, scope) for item in items)
            return dims if kind == DIMS else dims[0]
        if kind == NEW_DIM:
            return self.new_dim_name(value, op, scope)
        if kind == FLAG:
            if isinstance(value, ast.Bool):
                return value.value
            self.graph.error(
                "E201", f"`{name}=` of {op.name}() takes true or false", value.span, scope=scope
            )
            raise Failed
        if kind == NUMBER:
            number = literal_number(value)
            if number is None:
                self.graph.error(
                    "E201", f"`{name}=` of {op.name}() takes a number", value.span, scope=scope
                )
                raise Failed
            return number
        if kind == NUMBERS:
            numbers = [literal_number(i) for i in getattr(value, "items", ())]
            if not isinstance(value, ast.ListExpr) or any(n is None for n in numbers):
                self.graph.error(
                    "E201",
                    f"`{name}` of {op.name}() takes a list of numbers [a, b, …]",
                    value.span,
                    scope=scope,
                )
                raise Failed
            return tuple(numbers)
        if kind == SIZE:
            number = literal_number(value)
            if number is not None and number.is_integer() and number > 0:
                return int(number)
            return self.dim_name(value, op, scope)
        raise AssertionError(kind)

    def dim_name(self, value: ast.Expr, op: Op, scope: Scope) -> str:
        if isinstance(value, ast.Name):
            name = _dim_named(value, scope)
            if name in self.symbols.dims:
                return name
            self.symbols.suggest_dim(name, value.span)
            raise Failed
        self.graph.error(
            "E104", f"{op.name}() expects a dim name here (like `dim=V`)", value.span, scope=scope
        )
        raise Failed

    def new_dim_name(self, value: ast.Expr, op: Op, scope: Scope) -> str:
        """The new dim a `rename` introduces: a name no input declares."""
        if isinstance(value, ast.Name):
            name = _dim_named(value, scope)
            if name in self.symbols.new_dims:
                return name
            if name in self.symbols.dims:
                self.graph.error(
                    "E104",
                    f"{op.name}() introduces a new dim, and {name} is a dim of the inputs",
                    value.span,
                    fix=f"a name no input uses, e.g. `{name}2`",
                    scope=scope,
                )
                raise Failed
        self.graph.error(
            "E104",
            f"{op.name}() expects the name of the new dim here (like `to=K`)",
            value.span,
            scope=scope,
        )
        raise Failed

    # ---- defs and select --------------------------------------------------------------

    def inline(self, e: ast.Call, scope: Scope) -> Walk[int]:
        decl = self.symbols.defs[e.func]
        if e.func in self.symbols.recursive:
            raise Failed  # reported once, as E106, at the recursive call
        if e.kwargs or len(e.args) != len(decl.params):
            self.graph.error(
                "E103",
                f"def `{decl.name}` takes {len(decl.params)} argument(s) "
                f"({', '.join(decl.params)}), got {len(e.args) + len(e.kwargs)}"
                + (" (defs take positional arguments only)" if e.kwargs else ""),
                e.span,
                fix=f"{decl.name}({', '.join(decl.params)})",
                scope=scope,
            )
            raise Failed
        bindings: dict[str, int | DimAlias] = {}
        for param, arg in zip(decl.params, e.args, strict=True):
            bindings[param] = yield from self.def_argument(arg, scope)
        # The same def on the same values is the same value: built once, so defs that call
        # each other twice cost their size, not 2^depth. A failure is remembered too (its
        # errors were reported at the first call).
        key = (
            decl.name,
            tuple(bindings.values()),
            scope.params_only,
            scope.misuse_code,
            scope.adaptive,
        )
        if key in self.inlined:
            known = self.inlined[key]
            if known is None:
                raise Failed
            return known
        inner = scope.inside(DefCall(decl.name, e.span), bindings)
        try:
            result = yield self.expressions.sub(decl.body, inner)
        except Failed:
            self.inlined[key] = None
            raise
        self.inlined[key] = result
        return result

    def def_argument(self, arg: ast.Expr, scope: Scope) -> Walk[int | DimAlias]:
        if isinstance(arg, ast.Name):
            local = scope.locals.get(arg.id)
            if isinstance(local, DimAlias):
                return local
            if local is None and arg.id in self.symbols.dims and arg.id not in self.symbols.values:
                return DimAlias(arg.id)
        return (yield self.expressions.sub(arg, scope))

    def select(self, e: ast.Call, scope: Scope) -> Walk[int]:
        if len(e.args) != 1 or not isinstance(e.args[0], ast.Name):
            self.graph.error(
                "E103",
                "select() takes a static choice and one keyword per choice: select(mode, a=…, b=…)",
                e.span,
                scope=scope,
            )
            raise Failed
        name = e.args[0].id
        choice = self.symbols.choices.get(name)
        if choice is None:
            self.graph.error(
                "E101",
                f'`{name}` is not a static choice param (`param {name} = "a" in {{"a", "b"}}`)',
                e.args[0].span,
                scope=scope,
            )
            raise Failed
        branches = {kw.name: kw for kw in e.kwargs}
        for kw in e.kwargs:
            if kw.name not in choice.choices:
                self.graph.error(
                    "E103",
                    f"select({name}, …): `{kw.name}` is not one of the choices "
                    f"{', '.join(choice.choices)}",
                    kw.span,
                    scope=scope,
                )
        missing = [c for c in choice.choices if c not in branches]
        if missing:
            self.graph.error(
                "E103",
                f"select({name}, …) has no branch for {', '.join(missing)}",
                e.span,
                scope=scope,
            )
        if choice.value not in branches:
            raise Failed
        return (yield self.expressions.sub(branches[choice.value].value, scope))


def _dim_named(value: ast.Name, scope: Scope) -> str:
    """The dim a name stands for: a def's dim parameter stands for the caller's dim."""
    bound = scope.locals.get(value.id)
    return bound.name if isinstance(bound, DimAlias) else value.id
