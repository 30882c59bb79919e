"""AST to IR: names resolved, `use`d defs brought in, defs inlined, dims and types checked.

Every user mistake becomes a diagnostic (E101–E106, E200–E204); building goes on past
each one, so a spec's errors are reported together.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.ir import trampoline
from lossdsl.ir.model import ChoiceSpec, InputSpec, NamedValue, Node, ParamSpec, RangeSpec, SpecIR
from lossdsl.ir.schedules import schedule_problems
from lossdsl.ir.trampoline import Walk
from lossdsl.ir.types import ELLIPSIS, DimError, DtypeError, ShapeError, TensorType, format_dims
from lossdsl.ops import (
    BINARY_OPERATORS,
    CALLABLE_NAMES,
    ELEMENTWISE_FORM,
    OPERATOR_ONLY,
    OPS,
    RESERVED,
    UNARY_OPERATORS,
    Op,
)
from lossdsl.ops.op import DIM, DIMS, FLAG, MASK, NUMBER, NUMBERS, SIZE, TENSOR
from lossdsl.syntax import ast

DTYPES = {
    "float": "float",
    "f64": "float",
    "f32": "float",
    "bf16": "float",
    "f16": "float",
    "int": "int",
    "bool": "bool",
}
BUILTIN_VALUES = {"step", "inf", "pi"}
INT64_LIMIT = 2.0**63  # integers from here on (in magnitude) do not fit in an int64
OPERATOR_SPELLING = {
    op: f"`{symbol}`" for symbol, op in [*BINARY_OPERATORS.items(), *UNARY_OPERATORS.items()]
}
SCALAR_FLOAT = TensorType("float", ())
D = TypeVar("D")
NamedDecl = ast.InputDecl | ast.ParamDecl | ast.ValueDecl


class _Failed(Exception):
    """A sub-expression already reported an error; its parents stay quiet."""


@dataclass(frozen=True)
class _DimAlias:
    """A def argument that names a dim (`def f(x, d) = softmax(x, dim=d)`)."""

    name: str


@dataclass
class _DefCall:
    name: str
    call_span: Span

    def describe(self) -> str:
        return f"`{self.name}` called at {self.call_span}"


@dataclass
class _Scope:
    """What names mean while building one expression."""

    locals: dict[str, int | _DimAlias] = field(default_factory=dict)
    calls: tuple[_DefCall, ...] = ()
    via: tuple[str, ...] = ()  # the calls as nodes record them (`Node.via`), at most a few
    in_def: str | None = None
    params_only: bool = False  # a param's value or a weight: numbers, params and step only
    misuse_code: str = "E201"  # what using an input there is: E203 inside a weight


def build(
    spec: ast.SpecAST, used: list[ast.SpecAST], choices: dict[str, str] | None = None
) -> tuple[SpecIR | None, list[Diagnostic]]:
    """Build the IR of `spec`; `choices` overrides static-choice params."""
    builder = _Builder(spec, used, choices or {})
    ir = builder.run()
    return ir, builder.diagnostics


class _Builder:
    def __init__(self, spec: ast.SpecAST, used: list[ast.SpecAST], choices: dict[str, str]):
        self.spec = spec
        self.used = used
        self.choice_overrides = choices
        self.diagnostics: list[Diagnostic] = []
        self.nodes: list[Node] = []
        self.defs: dict[str, ast.DefDecl] = {}
        self.values: dict[str, NamedDecl] = {}  # inputs, params, lets, terms, metrics by name
        self.value_nodes: dict[str, int] = {}
        self.in_progress: list[str] = []
        self.failed: set[str] = set()  # values whose errors are already reported
        self.dims: list[str] = []
        self.inputs: list[InputSpec] = []
        self.params: list[ParamSpec] = []
        self.choices: dict[str, ChoiceSpec] = {}
        self.folded: list[float | None] = []  # per node: its value when built from numbers
        self.mentioning: dict[int, bool] = {}  # id() of an objective's part: mentions a term
        self.inlined: dict[tuple, int | None] = {}  # a def call on given values -> its node
        self.within_defs: dict[tuple, int] = {}  # a node built inside a def, by its content

    # ---- driver -----------------------------------------------------------------

    def run(self) -> SpecIR | None:
        self.collect_defs()
        self.collect_values()
        self.step_node = self.add("step", (), {}, SCALAR_FLOAT, self.spec.name_span, name="step")
        self.declare_inputs()
        self.declare_choices()
        for decl in self.build_order():
            self.value_of(decl.name, decl.name_span, _Scope())
        named = {"let": [], "term": [], "metric": []}  # type: dict[str, list[NamedValue]]
        for decl in self.decls(ast.ValueDecl):
            node = self.value_of(decl.name, decl.name_span, _Scope())
            if node is not None:
                named[decl.kind].append(NamedValue(name=decl.name, node=node, span=decl.span))
        self.check_terms(named["term"])
        weights, objective_span = self.objective(named["term"])
        if any(d.severity == "error" for d in self.diagnostics):
            return None
        return SpecIR(
            name=self.spec.name,
            doc=self.spec.doc,
            file=self.spec.file,
            nodes=tuple(self.nodes),
            inputs=tuple(self.inputs),
            params=tuple(self.params),
            choices=tuple(self.choices.values()),
            lets=tuple(named["let"]),
            terms=tuple(named["term"]),
            metrics=tuple(named["metric"]),
            weights=weights,
            objective_span=objective_span,
            dims=tuple(self.dims),
            step_node=self.step_node,
        )

    def decls(self, kind: type[D]) -> list[D]:
        return [d for d in self.spec.decls if isinstance(d, kind)]

    def error(
        self,
        code: str,
        message: str,
        span: Span,
        fix: str | None = None,
        scope: _Scope | None = None,
        notes: tuple[str, ...] = (),
    ) -> None:
        if scope is not None and scope.calls:
            message += " (in " + ", ".join(c.describe() for c in reversed(scope.calls)) + ")"
        self.diagnostics.append(Diagnostic(code, message, span, fix, notes))

    def add(
        self,
        op: str,
        args: tuple[int, ...],
        attrs: dict[str, Any],
        type_: TensorType,
        span: Span,
        name: str | None = None,
        scope: _Scope | None = None,
    ) -> int:
        # Inside a def, an op on the same operands is one node (hash-consing): a def body
        # inlined twice on equal values gives equal nodes, which the memo of def calls then
        # recognises as the same call. Outside defs every node keeps its own place in the text.
        shared = None
        if scope is not None and scope.in_def is not None and name is None:
            shared = (scope.in_def, op, args, _frozen(attrs), type_)
            if shared in self.within_defs:
                return self.within_defs[shared]
        via = scope.via if scope else ()
        node = Node(
            id=len(self.nodes),
            op=op,
            args=args,
            attrs=attrs,
            type=type_,
            span=span,
            name=name,
            via=via,
        )
        self.nodes.append(node)
        self.folded.append(self.fold_new(op, args, attrs))
        if shared is not None:
            self.within_defs[shared] = node.id
        return node.id

    def type_of(self, node_id: int) -> TensorType:
        return self.nodes[node_id].type

    # ---- declarations -------------------------------------------------------------

    def collect_defs(self) -> None:
        for source in [*self.used, self.spec]:
            for decl in source.decls:
                if not isinstance(decl, ast.DefDecl):
                    continue
                if decl.name in self.defs:
                    first = self.defs[decl.name]
                    if first is decl:
                        continue
                    self.error(
                        "E102",
                        f"def `{decl.name}` is defined twice (first at {first.name_span})",
                        decl.name_span,
                        fix=f"rename one of the two `{decl.name}` defs",
                    )
                    continue
                if decl.name in OPS and decl.name not in ("minimum", "maximum"):
                    self.error(
                        "E102",
                        f"def `{decl.name}` has the name of a built-in op",
                        decl.name_span,
                        fix=f"rename it, e.g. `my_{decl.name}`",
                    )
                    continue
                self.defs[decl.name] = decl
        self.check_recursion()

    def check_recursion(self) -> None:
        calls = {name: _called_names(d.body) for name, d in self.defs.items()}
        self.recursive = _on_cycles(calls)
        among = {n: {c for c in cs if c in self.recursive} for n, cs in calls.items()}
        for name, decl in self.defs.items():
            path = _cycle_from(name, among) if name in self.recursive else None
            if path is not None:
                span = _find_call_span(decl.body, path[1]) or decl.name_span
                chain = " -> ".join(path)
                self.error(
                    "E106",
                    f"def `{name}` is recursive: {chain}",
                    span,
                    fix="defs are inlined and cannot call themselves; unroll it",
                )

    def collect_values(self) -> None:
        for decl in self.spec.decls:
            if isinstance(decl, ast.InputDecl | ast.ParamDecl | ast.ValueDecl):
                name, span = decl.name, decl.name_span
                if name in BUILTIN_VALUES:
                    self.error(
                        "E102",
                        f"`{name}` is a built-in value and cannot be redefined",
                        span,
                        fix=f"rename it, e.g. `{name}_value`",
                    )
                elif name in self.values:
                    first = self.values[name]
                    first_span = getattr(first, "name_span", first.span)
                    self.error(
                        "E102",
                        f"`{name}` is defined twice (first at {first_span})",
                        span,
                        fix=f"rename one of the two `{name}`s",
                    )
                else:
                    self.values[name] = decl

    def declare_inputs(self) -> None:
        inputs = [d for d in self.decls(ast.InputDecl) if self.values.get(d.name) is d]
        # Every input's dims first: a range may name a dim of an input declared later
        # (`input target : int[N] in [0, V)` before `input logits : float[N, V]`).
        all_dims = [self.input_dims(decl) for decl in inputs]
        for decl, dims in zip(inputs, all_dims, strict=True):
            kind = DTYPES.get(decl.dtype)
            if kind is None:
                close = difflib.get_close_matches(decl.dtype, list(DTYPES), n=1)
                self.error(
                    "E101",
                    f"unknown dtype `{decl.dtype}` of input `{decl.name}` "
                    f"(expected one of {', '.join(DTYPES)})",
                    decl.dtype_span,
                    fix=f"`{close[0]}`" if close else None,
                )
                continue
            if dims is None:
                continue
            rng = self.range_spec(decl.range)
            default = self.input_default(decl, kind)
            node = self.add(
                "input",
                (),
                {"name": decl.name},
                TensorType(kind, dims),  # type: ignore[arg-type]
                decl.name_span,
                name=decl.name,
            )
            self.value_nodes[decl.name] = node
            self.inputs.append(
                InputSpec(
                    name=decl.name,
                    dtype=decl.dtype,
                    dims=dims,
                    grad=decl.grad,
                    range=rng,
                    default=default,
                    node=node,
                    span=decl.span,
                )
            )
            if decl.grad and kind != "float":
                self.error(
                    "E201",
                    f"input `{decl.name}` is {decl.dtype} and cannot receive "
                    "gradients; only float inputs can be `grad`",
                    decl.dtype_span,
                )

    def input_dims(self, decl: ast.InputDecl) -> tuple | None:
        dims: list = []
        ok = True
        for i, dim in enumerate(decl.dims):
            if dim.value == ELLIPSIS and i != 0:
                self.error("E104", "`...` may only lead the dims (`float[..., C]`)", dim.span)
                ok = False
            elif isinstance(dim.value, str) and dim.value != ELLIPSIS:
                if dim.value in dims:
                    self.error(
                        "E104",
                        f"dim {dim.value} appears twice in input `{decl.name}`",
                        dim.span,
                        fix="name the second one differently",
                    )
                    ok = False
                if dim.value not in self.dims:
                    self.dims.append(dim.value)
            dims.append(dim.value)
        return tuple(dims) if ok else None

    def input_default(self, decl: ast.InputDecl, kind: str) -> float | None:
        if decl.default is None:
            return None
        value = _literal_number(decl.default)
        if value is None:
            self.error(
                "E201",
                f"the default of input `{decl.name}` must be a number "
                "(`= 1` for an all-ones mask, `= 0`)",
                decl.default.span,
            )
            return None
        if kind == "int" and abs(value) >= INT64_LIMIT:
            self.error(
                "E204",
                f"the default of int input `{decl.name}` is too large for int64 (|n| < 2^63)",
                decl.default.span,
            )
        if kind == "bool" and value not in (0, 1):
            self.error(
                "E201",
                f"bool input `{decl.name}` can default to 0 or 1 only, not {value}",
                decl.default.span,
            )
        return value

    def range_spec(self, rng: ast.Range | None) -> RangeSpec | None:
        if rng is None:
            return None
        bounds = []
        for bound in (rng.lo, rng.hi):
            value = bound.value
            if isinstance(value, str):
                name = value.lstrip("-")
                if name not in self.dims:
                    self.suggest_dim(name, bound.span)
            bounds.append(value)
        spec = RangeSpec(
            lo=bounds[0], hi=bounds[1], lo_closed=rng.lo_closed, hi_closed=rng.hi_closed
        )
        if spec.is_empty():
            self.error("E204", f"the range {spec} is empty", rng.span)
        return spec

    def suggest_dim(self, name: str, span: Span) -> None:
        close = difflib.get_close_matches(name, self.dims, n=1)
        known = ", ".join(self.dims) or "none declared"
        self.error(
            "E104",
            f"unknown dim `{name}` (dims of the inputs: {known})",
            span,
            fix=f"`{close[0]}`" if close else None,
        )

    def declare_choices(self) -> None:
        for decl in self.decls(ast.ParamDecl):
            if decl.value is not None or self.values.get(decl.name) is not decl:
                continue
            assert decl.choice is not None
            if decl.choice not in decl.choices:
                self.error(
                    "E204",
                    f'static choice `{decl.name}` = "{decl.choice}" is not one '
                    f"of {{{', '.join(repr(c) for c in decl.choices)}}}",
                    decl.span,
                )
            value = self.choice_overrides.get(decl.name, decl.choice)
            if value not in decl.choices and decl.choice in decl.choices:
                self.error(
                    "E204",
                    f'static choice `{decl.name}` cannot be "{value}": expected '
                    f"one of {', '.join(decl.choices)}",
                    decl.span,
                )
            self.choices[decl.name] = ChoiceSpec(
                name=decl.name, value=value, choices=decl.choices, span=decl.span
            )

    def declare_param(self, decl: ast.ParamDecl) -> int:
        assert decl.value is not None
        default_node = self.expr(decl.value, _Scope(params_only=True))
        rng = self.range_spec(decl.range)
        default = _literal_number(decl.value)
        if default is None:
            folded = self.fold(default_node)
            default = folded if self.type_of(default_node).dims == () else None
            if folded is None:
                default = None
        outside = rng is not None and not rng.is_empty() and default is not None
        if outside and rng is not None and default is not None and not rng.contains(default):
            self.error(
                "E204",
                f"param `{decl.name}` = {_show(default)} is outside its range {rng}",
                decl.value.span,
                fix=f"choose a value in {rng}",
            )
        if self.type_of(default_node).dims != ():
            self.error("E201", f"param `{decl.name}` must be a scalar", decl.value.span)
        self.check_finite(default_node, f"the value of param `{decl.name}`")
        node = self.add(
            "param", (), {"name": decl.name}, SCALAR_FLOAT, decl.name_span, name=decl.name
        )
        self.params.append(
            ParamSpec(
                name=decl.name,
                node=node,
                default=default,
                default_node=default_node,
                range=rng,
                span=decl.span,
            )
        )
        return node

    def fold(self, node_id: int) -> float | None:
        """The value of a node built from numbers alone (None otherwise)."""
        return self.folded[node_id]

    def check_finite(self, root: int, what: str) -> None:
        """E204 where arithmetic on numbers in a weight or a param's value gives NaN, or
        overflows to ±inf from finite numbers (`inf - inf`, `0 * inf`, `1 / 0`, `1e308 * 10`).
        An `inf` written as such is the user's choice and stays."""
        origin = self.non_finite_origin(root)
        if origin is None:
            return
        value = self.folded[origin]
        assert value is not None
        if math.isnan(value):
            message = f"this is NaN (not a number), so {what} would be NaN"
        else:
            message = f"this overflows to {'' if value > 0 else '-'}inf, so {what} would be too"
        node = self.nodes[origin]
        notes = tuple(f"inlined from {via}" for via in node.via)
        fix = "use numbers whose result is finite"
        self.diagnostics.append(Diagnostic("E204", message, node.span, fix, notes))

    def non_finite_origin(self, root: int) -> int | None:
        """The first node under `root` whose folded value is NaN while its operands are not,
        or infinite while its operands are finite."""
        found, stack, seen = [], [root], {root}
        while stack:
            node = self.nodes[stack.pop()]
            value = self.folded[node.id]
            operands = [self.folded[a] for a in node.args]
            if value is not None and node.op != "const":
                nan_here = math.isnan(value) and not any(
                    o is not None and math.isnan(o) for o in operands
                )
                inf_here = math.isinf(value) and all(
                    o is not None and math.isfinite(o) for o in operands
                )
                if nan_here or inf_here:
                    found.append(node.id)
            fresh = [a for a in node.args if a not in seen]
            seen.update(fresh)
            stack += fresh
        return min(found, default=None)

    def fold_new(self, op_name: str, args: tuple[int, ...], attrs: dict[str, Any]) -> float | None:
        """The value of a node about to be added, from its arguments' (folded as built)."""
        if op_name == "const":
            return float(attrs["value"])
        op = OPS.get(op_name)
        if op is None or op.scalar is None or op.group == "schedule":
            return None
        values = [self.folded[a] for a in args]
        if any(v is None for v in values):
            return None
        return op.scalar(*values)

    # ---- values -------------------------------------------------------------------

    def build_order(self) -> list[NamedDecl]:
        """The params given by a value, then the lets, terms and metrics, each after the
        values it mentions: building one then never needs to build another first, however
        long a chain of lets is. A cycle is E106, at the mention that closes it."""
        roots: list[NamedDecl] = [d for d in self.decls(ast.ParamDecl) if d.value is not None]
        roots += self.decls(ast.ValueDecl)
        order: list[NamedDecl] = []
        done: set[str] = set()
        for root in roots:
            if self.values.get(root.name) is not root or root.name in done:
                continue
            path = [root.name]  # the values being ordered, each mentioned by the one before
            pending = [iter(self.mentioned_values(root))]
            while pending:
                for mention in pending[-1]:
                    if mention.id in self.failed or mention.id in done:
                        continue
                    if mention.id in path:
                        members = path[path.index(mention.id) :]
                        cycle = " -> ".join([*members, mention.id])
                        self.error(
                            "E106",
                            f"`{mention.id}` is defined in terms of itself: {cycle}",
                            mention.span,
                        )
                        self.failed.update(members)
                        continue
                    path.append(mention.id)
                    pending.append(iter(self.mentioned_values(self.values[mention.id])))
                    break
                else:
                    pending.pop()
                    finished = path.pop()
                    done.add(finished)
                    order.append(self.values[finished])
        return order

    def mentioned_values(self, decl: NamedDecl) -> Iterator[ast.Name]:
        """The names in a declaration's expression of the values it needs built first: other
        params for a param; params, lets, terms and metrics for the others. Only the chosen
        branch of a `select` counts; def bodies see no values, so only the calls' arguments."""
        if isinstance(decl, ast.InputDecl) or decl.value is None:
            return
        needed: tuple[type, ...] = (ast.ParamDecl,)
        if isinstance(decl, ast.ValueDecl):
            needed = (ast.ParamDecl, ast.ValueDecl)
        stack = [decl.value]
        while stack:
            e = stack.pop()
            if isinstance(e, ast.Name):
                found = self.values.get(e.id)
                if isinstance(found, ast.ParamDecl | ast.ValueDecl) and isinstance(found, needed):
                    if found.value is not None:
                        yield e
                continue
            chosen = self.chosen_branch(e) if isinstance(e, ast.Call) else None
            stack.extend(reversed(ast.children(e) if chosen is None else (chosen,)))

    def chosen_branch(self, e: ast.Call) -> ast.Expr | None:
        """The branch a well-formed `select(choice, a=…, b=…)` keeps (None otherwise)."""
        if e.func != "select" or len(e.args) != 1 or not isinstance(e.args[0], ast.Name):
            return None
        choice = self.choices.get(e.args[0].id)
        branch = next((kw for kw in e.kwargs if choice and kw.name == choice.value), None)
        return None if branch is None else branch.value

    def value_of(self, name: str, span: Span, scope: _Scope) -> int | None:
        """The node of a spec-level value, building lets, terms and params on first use."""
        if name in self.value_nodes:
            return self.value_nodes[name]
        if name in self.failed:
            return None  # its error was reported where it is defined
        decl = self.values.get(name)
        if decl is None or isinstance(decl, ast.InputDecl):
            return None
        if name in self.in_progress:
            members = self.in_progress[self.in_progress.index(name) :]
            cycle = " -> ".join([*members, name])
            self.error("E106", f"`{name}` is defined in terms of itself: {cycle}", span)
            self.failed.update(members)
            raise _Failed
        self.in_progress.append(name)
        try:
            if isinstance(decl, ast.ParamDecl):
                node = self.declare_param(decl)
            else:
                assert isinstance(decl, ast.ValueDecl)
                body = self.expr(decl.value, _Scope())
                node = self.named(body, name, decl.kind)
        except _Failed:
            self.failed.add(name)
            return None
        finally:
            self.in_progress.remove(name)
        self.value_nodes[name] = node
        return node

    def named(self, node_id: int, name: str, kind: str) -> int:
        """Give a node the spec's name (a fresh alias when the node already has one)."""
        node = self.nodes[node_id]
        if node.name is None and node.op not in ("input", "param", "step"):
            self.nodes[node_id] = node.model_copy(update={"name": name})
            return node_id
        return self.add("alias", (node_id,), {}, node.type, node.span, name=name)

    # ---- expressions --------------------------------------------------------------

    def expr(self, e: ast.Expr, scope: _Scope) -> int:
        """Build an expression; raises _Failed after reporting an error inside it."""
        return trampoline.run(self.walk(e, scope))

    def sub(self, e: ast.Expr, scope: _Scope) -> int | Walk[int]:
        """What a walk yields for a sub-expression: a leaf's node at once, else its walk."""
        if isinstance(e, ast.Number | ast.Bool | ast.Name):
            return self.leaf(e, scope)
        return self.walk(e, scope)

    def walk(self, e: ast.Expr, scope: _Scope) -> Walk[int]:
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
            return (yield from self.call(e, scope))
        if isinstance(e, ast.ListExpr):
            self.error(
                "E201",
                "a list is only allowed as `dim=[…]` or in piecewise(…)",
                e.span,
                scope=scope,
            )
            raise _Failed
        return self.leaf(e, scope)

    def leaf(self, e: ast.Expr, scope: _Scope) -> int:
        if isinstance(e, ast.Number):
            if math.isinf(e.value):
                self.error(
                    "E204",
                    "this number is too large for a float (the largest is about 1.8e308)",
                    e.span,
                    fix="write `inf` for infinity",
                    scope=scope,
                )
                raise _Failed
            kind = "int" if e.is_int else "float"
            return self.add(
                "const",
                (),
                {"value": e.value},
                TensorType(kind, (), weak=True),  # type: ignore[arg-type]
                e.span,
                scope=scope,
            )
        if isinstance(e, ast.Bool):
            return self.add(
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

    def name(self, e: ast.Name, scope: _Scope) -> int:
        if e.id in scope.locals:
            bound = scope.locals[e.id]
            if isinstance(bound, _DimAlias):
                self.error(
                    "E201",
                    f"`{e.id}` names the dim {bound.name}, not a value",
                    e.span,
                    fix=f"size({e.id})",
                    scope=scope,
                )
                raise _Failed
            return bound
        if e.id == "step":
            return self.step_node
        if e.id in ("inf", "pi"):
            value = math.inf if e.id == "inf" else math.pi
            return self.add(
                "const",
                (),
                {"value": value},
                TensorType("float", (), weak=True),
                e.span,
                scope=scope,
            )
        if scope.in_def is not None and (e.id in self.values):
            self.error(
                "E101",
                f"def `{scope.in_def}` cannot see `{e.id}`: a def sees only its "
                "arguments, other defs and built-ins",
                e.span,
                fix=f"pass `{e.id}` as an argument of `{scope.in_def}`",
                scope=scope,
            )
            raise _Failed
        if e.id in self.choices:
            self.error(
                "E201",
                f"`{e.id}` is a static choice; use it as select({e.id}, …)",
                e.span,
                scope=scope,
            )
            raise _Failed
        decl = self.values.get(e.id)
        if decl is not None:
            if scope.params_only and not isinstance(decl, ast.ParamDecl):
                what = "an input" if isinstance(decl, ast.InputDecl) else f"a {decl.kind}"
                self.error(
                    scope.misuse_code,
                    f"`{e.id}` is {what}; this value may only use numbers, params and step",
                    e.span,
                    scope=scope,
                )
                raise _Failed
            node = self.value_of(e.id, e.span, scope)
            if node is None:
                raise _Failed
            return node
        self.unknown_name(e.id, e.span, scope)
        raise _Failed

    def unknown_name(self, name: str, span: Span, scope: _Scope, callable_: bool = False) -> None:
        if name in RESERVED:
            self.error(
                "E101",
                f"`{name}` is not available yet",
                span,
                scope=scope,
                notes=(f"note: {RESERVED[name]}",),
            )
            return
        if name in self.dims and not callable_:
            self.error(
                "E101", f"`{name}` is a dim, not a value", span, fix=f"size({name})", scope=scope
            )
            return
        if callable_:
            known = [*CALLABLE_NAMES, *self.defs]
            what = "op or def"
        else:
            known = [*scope.locals, *(self.values if scope.in_def is None else ()), *BUILTIN_VALUES]
            what = "name"
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        fix = f"did you mean `{close[0]}`?" if close else None
        self.error("E101", f"unknown {what} `{name}`", span, fix=fix, scope=scope)

    def call(self, e: ast.Call, scope: _Scope) -> Walk[int]:
        if e.func == "select":
            return (yield from self.select(e, scope))
        if e.func in self.defs and e.func not in OPS:
            return (yield from self.inline(e, scope))
        op_name = e.func
        if e.func in ELEMENTWISE_FORM and len(e.args) == 2 and not e.kwargs:
            op_name = ELEMENTWISE_FORM[e.func]
        op = OPS.get(op_name)
        if op is None or op_name in OPERATOR_ONLY:
            self.unknown_name(e.func, e.func_span, scope, callable_=True)
            raise _Failed
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
                            self.add(
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
                    tensors.append((yield self.sub(value, scope)))
                    spans.append(value.span)
                    attrs.setdefault("present", []).append(arg.name)
                else:
                    attrs[arg.name] = self.static_argument(
                        op, arg.kind, arg.name, value, arg.default, e, scope
                    )
            except _Failed:
                failed = True
        if failed:
            raise _Failed
        if "present" in attrs:
            attrs["present"] = tuple(attrs["present"])
        if op.group == "schedule":
            self.check_schedule(op, e, bound, tensors, attrs, scope)
        return self.apply(op, tensors, attrs, e.span, scope, spans)

    def check_schedule(
        self,
        op: Op,
        e: ast.Call,
        bound: dict[str, ast.Expr],
        tensors: list[int],
        attrs: dict[str, Any],
        scope: _Scope,
    ) -> None:
        """E204/E103 for a schedule whose number arguments give no finite value at some
        step (`exponential(0, 1, …)`, `steps=-5`, piecewise values that do not fit)."""
        given = zip(attrs.get("present", ()), tensors, strict=True)
        numbers = {name: self.fold(node) for name, node in given}
        problems = schedule_problems(op.name, numbers, attrs)
        for problem in problems:
            where = bound.get(problem.arg) if problem.arg is not None else None
            span = where.span if where is not None else e.span
            self.error(problem.code, problem.message, span, fix=problem.fix, scope=scope)
        if problems:
            raise _Failed

    def bind_arguments(self, op: Op, e: ast.Call, scope: _Scope) -> dict[str, ast.Expr]:
        names = [a.name for a in op.args]

        def wrong(message: str, span: Span) -> _Failed:
            self.error("E103", f"{op.name}() {message}", span, fix=op.signature(), scope=scope)
            return _Failed()

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
        scope: _Scope,
    ) -> Any:
        if value is None:
            return default
        if kind in (DIM, DIMS):
            items = value.items if (kind == DIMS and isinstance(value, ast.ListExpr)) else (value,)
            dims = tuple(self.dim_name(item, op, scope) for item in items)
            return dims if kind == DIMS else dims[0]
        if kind == FLAG:
            if isinstance(value, ast.Bool):
                return value.value
            self.error(
                "E201", f"`{name}=` of {op.name}() takes true or false", value.span, scope=scope
            )
            raise _Failed
        if kind == NUMBER:
            number = _literal_number(value)
            if number is None:
                self.error(
                    "E201", f"`{name}=` of {op.name}() takes a number", value.span, scope=scope
                )
                raise _Failed
            return number
        if kind == NUMBERS:
            numbers = [_literal_number(i) for i in getattr(value, "items", ())]
            if not isinstance(value, ast.ListExpr) or any(n is None for n in numbers):
                self.error(
                    "E201",
                    f"`{name}` of {op.name}() takes a list of numbers [a, b, …]",
                    value.span,
                    scope=scope,
                )
                raise _Failed
            return tuple(numbers)
        if kind == SIZE:
            number = _literal_number(value)
            if number is not None and number.is_integer() and number > 0:
                return int(number)
            return self.dim_name(value, op, scope)
        raise AssertionError(kind)

    def dim_name(self, value: ast.Expr, op: Op, scope: _Scope) -> str:
        if isinstance(value, ast.Name):
            bound = scope.locals.get(value.id)
            name = bound.name if isinstance(bound, _DimAlias) else value.id
            if name in self.dims:
                return name
            self.suggest_dim(name, value.span)
            raise _Failed
        self.error(
            "E104", f"{op.name}() expects a dim name here (like `dim=V`)", value.span, scope=scope
        )
        raise _Failed

    def apply(
        self,
        op: Op,
        args: list[int],
        attrs: dict[str, Any],
        span: Span,
        scope: _Scope,
        arg_spans: list[Span] | None = None,
    ) -> int:
        args = self.widen_large_integers(op, args, attrs, scope)
        types = [self.type_of(a) for a in args]
        if scope.params_only and op.group in ("reduction", "distribution"):
            self.error(
                "E201",
                f"{op.name}() needs tensors; a param's value or a weight may only "
                "use numbers, params, step and schedules",
                span,
                scope=scope,
            )
            raise _Failed
        where = arg_spans or [span] * len(args)
        for arg, t, arg_span in zip(self.present_args(op, attrs), types, where, strict=False):
            if arg.kind == MASK and t.kind != "bool":
                self.error(
                    "E201",
                    f"`{arg.name}` of {op.name}() must be bool, got {t}",
                    arg_span,
                    fix=f"compare it, e.g. `{arg.name}=x > 0`",
                    scope=scope,
                )
                raise _Failed
        try:
            kind = op.dtype(types, {**attrs, "_op": op.name})
            dims = op.shape(types, attrs)
        except ShapeError as error:
            shown = ", ".join(
                f"{self.describe(a)} is {t}" for a, t in zip(args, types, strict=False)
            )
            self.error(
                "E200",
                f"shapes do not broadcast in {op.name}: {error}",
                span,
                notes=(shown,),
                fix=_broadcast_fix(types),
                scope=scope,
            )
            raise _Failed from None
        except DimError as error:
            self.error("E104", f"{op.name}(): {error}", span, scope=scope)
            raise _Failed from None
        except DtypeError as error:
            at = where[error.arg] if error.arg is not None and error.arg < len(where) else span
            self.error("E201", f"{op.name}(): {error}", at, scope=scope)
            raise _Failed from None
        return self.add(op.name, tuple(args), attrs, TensorType(kind, dims), span, scope=scope)

    def widen_large_integers(
        self, op: Op, args: list[int], attrs: dict[str, Any], scope: _Scope
    ) -> list[int]:
        """An integer literal too large for int64 (|n| ≥ 2^63) is fine where the op computes
        in floats (it becomes a float literal), and an error (E204) where it would stay an
        integer: torch cannot hold it, and the call would fail at run time."""
        large = [i for i, a in enumerate(args) if self.is_large_integer(a)]
        if not large:
            return args
        types = [self.type_of(a) for a in args]
        try:
            kind = op.dtype(types, {**attrs, "_op": op.name})
        except DtypeError:
            return args  # reported by `apply`
        others = [t for i, t in enumerate(types) if i not in large]
        if kind == "float" or any(t.kind == "float" for t in others):
            return [self.as_float(a) if i in large else a for i, a in enumerate(args)]
        literal = self.nodes[args[large[0]]]
        spelling = {**OPERATOR_SPELLING}.get(op.name, f"{op.name}()")
        self.error(
            "E204",
            f"the integer {literal.attrs['value']:.6g} is too large for int64 (|n| < 2^63), "
            f"and {spelling} would compute with it as an integer",
            literal.span,
            fix="write it as a float (`1e39`) if a float is meant",
            scope=scope,
        )
        raise _Failed

    def is_large_integer(self, node_id: int) -> bool:
        node = self.nodes[node_id]
        return (
            node.op == "const"
            and node.type.kind == "int"
            and abs(node.attrs["value"]) >= INT64_LIMIT
        )

    def as_float(self, node_id: int) -> int:
        node = self.nodes[node_id]
        value = float(node.attrs["value"])
        return self.add(
            "const", (), {"value": value}, TensorType("float", (), weak=True), node.span
        )

    def present_args(self, op: Op, attrs: dict[str, Any]) -> list:
        present = attrs.get("present")
        return [a for a in op.tensor_args() if present is None or a.name in present]

    def describe(self, node_id: int) -> str:
        node = self.nodes[node_id]
        return f"`{node.name}`" if node.name else "the operand"

    def inline(self, e: ast.Call, scope: _Scope) -> Walk[int]:
        decl = self.defs[e.func]
        if e.func in self.recursive:
            raise _Failed  # reported once, as E106, at the recursive call
        if e.kwargs or len(e.args) != len(decl.params):
            self.error(
                "E103",
                f"def `{decl.name}` takes {len(decl.params)} argument(s) "
                f"({', '.join(decl.params)}), got {len(e.args) + len(e.kwargs)}"
                + (" (defs take positional arguments only)" if e.kwargs else ""),
                e.span,
                fix=f"{decl.name}({', '.join(decl.params)})",
                scope=scope,
            )
            raise _Failed
        bindings: dict[str, int | _DimAlias] = {}
        for param, arg in zip(decl.params, e.args, strict=True):
            bindings[param] = yield from self.def_argument(arg, scope)
        # The same def on the same values is the same value: built once, so defs that call
        # each other twice cost their size, not 2^depth. A failure is remembered too (its
        # errors were reported at the first call).
        key = (decl.name, tuple(bindings.values()), scope.params_only, scope.misuse_code)
        if key in self.inlined:
            known = self.inlined[key]
            if known is None:
                raise _Failed
            return known
        inner = _Scope(
            locals=bindings,
            calls=(*scope.calls, _DefCall(decl.name, e.span)),
            via=_trail((*scope.calls, _DefCall(decl.name, e.span))),
            in_def=decl.name,
            params_only=scope.params_only,
            misuse_code=scope.misuse_code,
        )
        try:
            result = yield self.sub(decl.body, inner)
        except _Failed:
            self.inlined[key] = None
            raise
        self.inlined[key] = result
        return result

    def def_argument(self, arg: ast.Expr, scope: _Scope) -> Walk[int | _DimAlias]:
        if isinstance(arg, ast.Name):
            local = scope.locals.get(arg.id)
            if isinstance(local, _DimAlias):
                return local
            if local is None and arg.id in self.dims and arg.id not in self.values:
                return _DimAlias(arg.id)
        return (yield self.sub(arg, scope))

    def select(self, e: ast.Call, scope: _Scope) -> Walk[int]:
        if len(e.args) != 1 or not isinstance(e.args[0], ast.Name):
            self.error(
                "E103",
                "select() takes a static choice and one keyword per choice: select(mode, a=…, b=…)",
                e.span,
                scope=scope,
            )
            raise _Failed
        name = e.args[0].id
        choice = self.choices.get(name)
        if choice is None:
            self.error(
                "E101",
                f'`{name}` is not a static choice param (`param {name} = "a" in {{"a", "b"}}`)',
                e.args[0].span,
                scope=scope,
            )
            raise _Failed
        branches = {kw.name: kw for kw in e.kwargs}
        for kw in e.kwargs:
            if kw.name not in choice.choices:
                self.error(
                    "E103",
                    f"select({name}, …): `{kw.name}` is not one of the choices "
                    f"{', '.join(choice.choices)}",
                    kw.span,
                    scope=scope,
                )
        missing = [c for c in choice.choices if c not in branches]
        if missing:
            self.error(
                "E103",
                f"select({name}, …) has no branch for {', '.join(missing)}",
                e.span,
                scope=scope,
            )
        if choice.value not in branches:
            raise _Failed
        return (yield self.sub(branches[choice.value].value, scope))

    # ---- terms and the objective --------------------------------------------------

    def check_terms(self, terms: list[NamedValue]) -> None:
        for term in terms:
            t = self.type_of(term.node)
            if not t.is_scalar:
                self.error(
                    "E202",
                    f"term `{term.name}` is {t}, not a scalar",
                    term.span,
                    fix="reduce it, e.g. `mean(…)` or `sum(…, dim=…)`",
                )

    def objective(self, terms: list[NamedValue]) -> tuple[dict[str, int], Span | None]:
        term_nodes = {t.name: t.node for t in terms}
        minimize = self.decls(ast.Minimize)
        for extra in minimize[1:]:
            self.error("E102", "`minimize` is given twice", extra.span)
        if not minimize:
            ones = {
                n: self.add("const", (), {"value": 1.0}, SCALAR_FLOAT, self.spec.name_span)
                for n in term_nodes
            }
            return ones, None
        decl = minimize[0]
        try:
            declared = {d.name for d in self.decls(ast.ValueDecl) if d.kind == "term"}
            walk = self.linear_combination(decl.objective, term_nodes, declared)
            combination = trampoline.run(walk)
        except _Failed:
            return {}, decl.span
        weights = {}
        for name in term_nodes:
            if name in combination:
                weights[name] = combination[name]
                self.check_finite(combination[name], f"the weight of term `{name}`")
            else:
                weights[name] = self.add("const", (), {"value": 0.0}, SCALAR_FLOAT, decl.span)
        return weights, decl.span

    def linear_combination(
        self, e: ast.Expr, terms: dict[str, int], declared: set[str]
    ) -> Walk[dict[str, int]]:
        """`w1 * t1 + w2 * t2 - …` as {term: weight node}; E203 for anything else."""
        if isinstance(e, ast.Name) and e.id in declared:
            if e.id not in terms:
                raise _Failed  # the term itself had an error, already reported
            return {e.id: self.constant(1.0, e.span)}
        if not self.mentions(e, declared):
            if isinstance(e, ast.Name) and e.id in self.values and e.id not in terms:
                what = type(self.values[e.id]).__name__
                self.error(
                    "E203",
                    f"`{e.id}` is not a term; minimize a weighted sum of terms",
                    e.span,
                    notes=(f"`{e.id}` is declared as {what}",),
                    fix=f"declare it with `term {e.id} = …`",
                )
            else:
                self.error(
                    "E203",
                    "a constant offset in `minimize`: the objective must be a "
                    "weighted sum of terms",
                    e.span,
                    fix="drop the constant",
                )
            raise _Failed
        if isinstance(e, ast.Unary) and e.op == "-":
            inner = yield self.linear_combination(e.operand, terms, declared)
            return {t: self.scaled(w, -1.0, e.span) for t, w in inner.items()}
        if isinstance(e, ast.Binary) and e.op in "+-":
            left = yield self.linear_combination(e.left, terms, declared)
            right = yield self.linear_combination(e.right, terms, declared)
            smaller, larger = sorted((left, right), key=len)  # a long sum grows on one side
            twice = [t for t in smaller if t in larger]
            if twice:
                self.error(
                    "E203",
                    f"term `{sorted(twice)[0]}` appears twice in `minimize`",
                    e.right.span,
                    fix="combine its weights into one",
                )
                raise _Failed
            if e.op == "-":
                right = {t: self.scaled(w, -1.0, e.span) for t, w in right.items()}
            smaller, larger = sorted((left, right), key=len)
            larger.update(smaller)  # the order of terms is the declarations', set by the caller
            return larger
        if isinstance(e, ast.Binary) and e.op in "*/":
            weight_side, term_side = (e.left, e.right) if e.op == "*" else (e.right, e.left)
            if e.op == "*" and self.mentions(e.left, declared):
                weight_side, term_side = e.right, e.left
            if self.mentions(weight_side, declared):
                self.error(
                    "E203",
                    "a product of terms in `minimize`: the objective must be a "
                    "weighted sum of terms",
                    e.span,
                )
                raise _Failed
            weight = self.expr(weight_side, _Scope(params_only=True, misuse_code="E203"))
            if self.type_of(weight).dims != ():
                self.error("E203", "a weight must be a scalar", weight_side.span)
                raise _Failed
            if e.op == "/":
                one = self.constant(1.0, e.span)
                weight = self.apply(OPS["div"], [one, weight], {}, weight_side.span, _Scope())
            inner = yield self.linear_combination(term_side, terms, declared)
            return {t: self.times(weight, w, e.span) for t, w in inner.items()}
        self.error(
            "E203",
            "`minimize` must be a weighted sum of terms (w1 * t1 + w2 * t2 …); "
            "a function of terms is not",
            e.span,
        )
        raise _Failed

    def mentions(self, e: ast.Expr, names: set[str]) -> bool:
        """Whether `e` mentions one of `names` (the terms); remembered for every part of `e`,
        so asking again for each part of a long sum costs nothing."""
        if id(e) not in self.mentioning:
            for part in reversed(list(ast.walk(e))):  # every part after the parts inside it
                if id(part) not in self.mentioning:
                    inside = ast.children(part)
                    self.mentioning[id(part)] = (
                        isinstance(part, ast.Name) and part.id in names
                    ) or any(self.mentioning[id(c)] for c in inside)
        return self.mentioning[id(e)]

    def times(self, weight: int, other: int, span: Span) -> int:
        """weight * other, leaving out a factor of exactly 1."""
        for a, b in ((weight, other), (other, weight)):
            if self.nodes[b].op == "const" and self.nodes[b].attrs["value"] == 1:
                return a
        return self.apply(OPS["mul"], [weight, other], {}, span, _Scope())

    def constant(self, value: float, span: Span) -> int:
        return self.add("const", (), {"value": value}, SCALAR_FLOAT, span)

    def scaled(self, weight: int, factor: float, span: Span) -> int:
        if self.nodes[weight].op == "const":
            value = self.nodes[weight].attrs["value"] * factor
            return self.constant(value, span)
        return self.times(self.constant(factor, span), weight, span)


# ---- helpers ------------------------------------------------------------------------


def _literal_number(e: ast.Expr) -> float | None:
    """The value of a number literal, `true`/`false`, `inf`, each maybe negated (`- - 2`)."""
    sign = 1.0
    while isinstance(e, ast.Unary) and e.op == "-":
        sign, e = -sign, e.operand
    if isinstance(e, ast.Number):
        return sign * e.value
    if isinstance(e, ast.Bool):
        return sign * float(e.value)
    if isinstance(e, ast.Name) and e.id == "inf":
        return sign * math.inf
    return None


def _show(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


VIA_KEPT = 8  # calls a node records: the outermost and innermost four of a deeper trail


def _trail(calls: tuple[_DefCall, ...]) -> tuple[str, ...]:
    """How nodes record the def calls they were inlined through (outermost first): all of
    them, or for defs nested deeper, the outer and inner ends and how many lie between."""
    if len(calls) <= VIA_KEPT:
        return tuple(c.describe() for c in calls)
    half = VIA_KEPT // 2
    between = f"… {len(calls) - 2 * half} calls in between …"
    ends = [c.describe() for c in (*calls[:half], *calls[-half:])]
    return (*ends[:half], between, *ends[half:])


def _called_names(e: ast.Expr) -> set[str]:
    return {x.func for x in ast.walk(e) if isinstance(x, ast.Call)}


def _on_cycles(calls: dict[str, set[str]]) -> set[str]:
    """The defs on some cycle of calls: Tarjan's strongly connected components, with a
    stack of its own, in time linear in the number of defs and calls."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cyclic: set[str] = set()

    def visit(name: str) -> Iterator[str]:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        return iter(sorted(c for c in calls[name] if c in calls))  # ops are no defs

    for root in calls:
        if root in index:
            continue
        work = [(root, visit(root))]
        while work:
            name, callees = work[-1]
            for callee in callees:
                if callee not in index:
                    work.append((callee, visit(callee)))
                    break
                if callee in on_stack:
                    low[name] = min(low[name], index[callee])
            else:
                work.pop()
                if work:
                    caller = work[-1][0]
                    low[caller] = min(low[caller], low[name])
                if low[name] == index[name]:  # `name` roots a component: pop it
                    members = stack[stack.index(name) :]
                    del stack[stack.index(name) :]
                    on_stack.difference_update(members)
                    if len(members) > 1 or name in calls[name]:
                        cyclic.update(members)
    return cyclic


def _cycle_from(start: str, calls: dict[str, set[str]]) -> list[str] | None:
    """A call path start -> … -> start, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        name, path = stack.pop()
        for callee in sorted(calls.get(name, ())):
            if callee == start:
                return [*path, callee]
            if callee in calls and callee not in seen:
                seen.add(callee)
                stack.append((callee, [*path, callee]))
    return None


def _find_call_span(e: ast.Expr, func: str) -> Span | None:
    calls = (x for x in ast.walk(e) if isinstance(x, ast.Call) and x.func == func)
    return next((call.span for call in calls), None)


def _frozen(value: Any) -> Any:
    """Attributes as a hashable key (lists and dicts become tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def _broadcast_fix(types: list[TensorType]) -> str | None:
    """For the classic per-sequence bug (`[B, T] * [B]`), suggest the trailing 1."""
    if len(types) != 2:
        return None
    a, b = sorted(types, key=lambda t: len(t.dims), reverse=True)
    if b.dims and len(a.dims) > len(b.dims) and a.dims[: len(b.dims)] == b.dims:
        padded = format_dims((*b.dims, *([1] * (len(a.dims) - len(b.dims)))))
        return f"declare the shorter operand as {b.kind}{padded} so it broadcasts per row"
    return None
