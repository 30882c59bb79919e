"""The declarations of a spec: defs (with `use`d ones), the names of values, inputs and
their dims, static choices, and the order in which params, lets, terms and metrics are
built. E101, E102, E104, E106 and E204 for what is wrong with them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator
from typing import TypeVar

from lossdsl.diagnostics import Span
from lossdsl.ir.graph import INT64_LIMIT, SCALAR_FLOAT, Graph
from lossdsl.ir.model import ChoiceSpec, InputSpec, RangeSpec
from lossdsl.ir.types import ELLIPSIS, TensorType
from lossdsl.ops import OPS
from lossdsl.ops.op import NEW_DIM
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
BUILTIN_VALUES = {"step", "inf", "pi", "world_size"}
D = TypeVar("D")
NamedDecl = ast.InputDecl | ast.ParamDecl | ast.StateDecl | ast.ValueDecl


class Symbols:
    """What the spec declares, by name, and the nodes of the inputs and of `step`."""

    def __init__(
        self,
        graph: Graph,
        spec: ast.SpecAST,
        used: list[ast.SpecAST],
        choice_overrides: dict[str, str],
    ):
        self.graph = graph
        self.spec = spec
        self.used = used
        self.choice_overrides = choice_overrides
        self.defs: dict[str, ast.DefDecl] = {}
        self.recursive: set[str] = set()  # defs on a cycle of calls (E106)
        self.values: dict[str, NamedDecl] = {}  # inputs, params, states, lets, terms, metrics
        self.value_nodes: dict[str, int] = {}  # the node of each value built so far
        self.failed: set[str] = set()  # values whose errors are already reported
        self.dims: list[str] = []  # named dims in order of first appearance
        self.new_dims: set[str] = set()  # dims a `rename(…, to=K)` introduces (no input has K)
        self.copied_from: dict[str, tuple[str, Span]] = {}  # K -> the dim K is a copy of
        self.inputs: list[InputSpec] = []
        self.choices: dict[str, ChoiceSpec] = {}

    def decls(self, kind: type[D]) -> list[D]:
        return [d for d in self.spec.decls if isinstance(d, kind)]

    # ---- defs ---------------------------------------------------------------------

    def collect_defs(self) -> None:
        for source in [*self.used, self.spec]:
            for decl in source.decls:
                if not isinstance(decl, ast.DefDecl):
                    continue
                if decl.name in self.defs:
                    first = self.defs[decl.name]
                    if first is decl:
                        continue
                    self.graph.error(
                        "E102",
                        f"def `{decl.name}` is defined twice (first at {first.name_span})",
                        decl.name_span,
                        fix=f"rename one of the two `{decl.name}` defs",
                    )
                    continue
                if decl.name in OPS and decl.name not in ("minimum", "maximum"):
                    self.graph.error(
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
                self.graph.error(
                    "E106",
                    f"def `{name}` is recursive: {chain}",
                    span,
                    fix="defs are inlined and cannot call themselves; unroll it",
                )

    # ---- values, inputs, choices ----------------------------------------------------

    def collect_values(self) -> None:
        for decl in self.spec.decls:
            if isinstance(decl, ast.InputDecl | ast.ParamDecl | ast.StateDecl | ast.ValueDecl):
                name, span = decl.name, decl.name_span
                if name in BUILTIN_VALUES:
                    self.graph.error(
                        "E102",
                        f"`{name}` is a built-in value and cannot be redefined",
                        span,
                        fix=f"rename it, e.g. `{name}_value`",
                    )
                elif name in self.values:
                    first = self.values[name]
                    first_span = getattr(first, "name_span", first.span)
                    self.graph.error(
                        "E102",
                        f"`{name}` is defined twice (first at {first_span})",
                        span,
                        fix=f"rename one of the two `{name}`s",
                    )
                else:
                    self.values[name] = decl

    def declare_step(self) -> None:
        self.step_node = self.graph.add(
            "step", (), {}, SCALAR_FLOAT, self.spec.name_span, name="step"
        )

    def declare_inputs(self) -> None:
        inputs = [d for d in self.decls(ast.InputDecl) if self.values.get(d.name) is d]
        # Every input's dims first: a range may name a dim of an input declared later
        # (`input target : int[N] in [0, V)` before `input logits : float[N, V]`).
        all_dims = [self.input_dims(decl) for decl in inputs]
        for decl, dims in zip(inputs, all_dims, strict=True):
            kind = DTYPES.get(decl.dtype)
            if kind is None:
                close = difflib.get_close_matches(decl.dtype, list(DTYPES), n=1)
                self.graph.error(
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
            node = self.graph.add(
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
                self.graph.error(
                    "E201",
                    f"input `{decl.name}` is {decl.dtype} and cannot receive "
                    "gradients; only float inputs can be `grad`",
                    decl.dtype_span,
                )

    def declare_new_dims(self) -> None:
        """The dims `rename(x, dim=N, to=K)` introduces: a `to=` name that no input declares,
        written in the spec or in a def's body (not one of the def's arguments). Collected
        before any expression is built, so that `index(K)` may come before the rename."""
        declared = set(self.dims)
        passing = self._passing_new_dims()
        for expression, arguments in self._expressions():
            for call in _calls(expression):
                for target in _new_dim_arguments(call, self.defs, passing):
                    if target.id in arguments or target.id in declared:
                        continue
                    if target.id not in self.new_dims:
                        self.new_dims.add(target.id)
                        self.dims.append(target.id)

    def _passing_new_dims(self) -> dict[str, set[int]]:
        """For each def, the positions of its arguments that reach a new dim
        (`def copy(x, N, K) = rename(x, N, K)`: position 2), through other defs too."""
        passing: dict[str, set[int]] = {name: set() for name in self.defs}
        grew = True
        while grew:
            grew = False
            for name, definition in self.defs.items():
                for call in _calls(definition.body):
                    for target in _new_dim_arguments(call, self.defs, passing):
                        if target.id in definition.params:
                            position = definition.params.index(target.id)
                            grew |= position not in passing[name]
                            passing[name].add(position)
        return passing

    def _expressions(self) -> Iterator[tuple[ast.Expr, tuple[str, ...]]]:
        """Every expression of the spec, and every def body (with the def's arguments)."""
        for decl in self.spec.decls:
            if isinstance(decl, ast.InputDecl) and decl.default is not None:
                yield decl.default, ()
            elif isinstance(decl, ast.ParamDecl) and decl.value is not None:
                yield decl.value, ()
            elif isinstance(decl, ast.ValueDecl):
                yield decl.value, ()
            elif isinstance(decl, ast.Minimize):
                yield decl.objective, ()
        for definition in self.defs.values():
            yield definition.body, definition.params

    def input_dims(self, decl: ast.InputDecl) -> tuple | None:
        dims: list = []
        ok = True
        for i, dim in enumerate(decl.dims):
            if dim.value == ELLIPSIS and i != 0:
                self.graph.error("E104", "`...` may only lead the dims (`float[..., C]`)", dim.span)
                ok = False
            elif isinstance(dim.value, str) and dim.value != ELLIPSIS:
                if dim.value in dims:
                    self.graph.error(
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
        value = literal_number(decl.default)
        if value is None:
            self.graph.error(
                "E201",
                f"the default of input `{decl.name}` must be a number "
                "(`= 1` for an all-ones mask, `= 0`)",
                decl.default.span,
            )
            return None
        if math.isinf(value) and _number_written(decl.default):
            self.graph.error(
                "E204",
                "this number is too large for a float (the largest is about 1.8e308)",
                decl.default.span,
                fix="write `inf` for infinity",
            )
        elif kind == "int" and abs(value) >= INT64_LIMIT:
            self.graph.error(
                "E204",
                f"the default of int input `{decl.name}` is too large for int64 (|n| < 2^63)",
                decl.default.span,
            )
        if kind == "bool" and value not in (0, 1):
            self.graph.error(
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
            self.graph.error("E204", f"the range {spec} is empty", rng.span)
        return spec

    def suggest_dim(self, name: str, span: Span) -> None:
        close = difflib.get_close_matches(name, self.dims, n=1)
        known = ", ".join(self.dims) or "none declared"
        self.graph.error(
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
                self.graph.error(
                    "E204",
                    f'static choice `{decl.name}` = "{decl.choice}" is not one '
                    f"of {{{', '.join(repr(c) for c in decl.choices)}}}",
                    decl.span,
                )
            value = self.choice_overrides.get(decl.name, decl.choice)
            if value not in decl.choices and decl.choice in decl.choices:
                self.graph.error(
                    "E204",
                    f'static choice `{decl.name}` cannot be "{value}": expected '
                    f"one of {', '.join(decl.choices)}",
                    decl.span,
                )
            self.choices[decl.name] = ChoiceSpec(
                name=decl.name, value=value, choices=decl.choices, span=decl.span
            )

    # ---- the order values are built in ---------------------------------------------

    def build_order(self) -> list[NamedDecl]:
        """The params given by a value, the states, then the lets, terms and metrics, each
        after the values it mentions: building one then never needs to build another first,
        however long a chain of lets is. A cycle is E106, at the mention that closes it.
        (A state's update is built after all of them: it may read any value, itself too.)"""
        roots: list[NamedDecl] = [d for d in self.decls(ast.ParamDecl) if d.value is not None]
        roots += self.decls(ast.StateDecl)
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
                        self.graph.error(
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
        params for a param and for a state's start; params, lets, terms and metrics for the
        others (states are built before them). Only the chosen
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


def literal_number(e: ast.Expr) -> float | None:
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


def _number_written(e: ast.Expr) -> bool:
    """Whether a literal is a number as written (`1e999`), not `inf`, maybe negated."""
    while isinstance(e, ast.Unary):
        e = e.operand
    return isinstance(e, ast.Number)


def show_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


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


def _calls(expression: ast.Expr) -> Iterator[ast.Call]:
    """The calls inside an expression, found with an explicit stack."""
    stack: list[ast.Expr] = [expression]
    while stack:
        e = stack.pop()
        if isinstance(e, ast.Call):
            yield e
            stack += [*e.args, *(k.value for k in e.kwargs)]
        elif isinstance(e, ast.Unary):
            stack.append(e.operand)
        elif isinstance(e, ast.Binary):
            stack += [e.left, e.right]
        elif isinstance(e, ast.ListExpr):
            stack += list(e.items)


def _new_dim_arguments(
    call: ast.Call, defs: dict[str, ast.DefDecl], passing: dict[str, set[int]]
) -> Iterator[ast.Name]:
    """The names a call gives as new dims: `to=` of `rename`, or a def's argument that
    reaches one."""
    if call.func in defs:
        for position in sorted(passing.get(call.func, ())):
            if position < len(call.args) and isinstance(call.args[position], ast.Name):
                yield call.args[position]  # type: ignore[misc]
        return
    op = OPS.get(call.func)
    for position, arg in enumerate(op.args if op is not None else ()):
        if arg.kind != NEW_DIM:
            continue
        given = [k.value for k in call.kwargs if k.name == arg.name]
        target = given[0] if given else (call.args[position] if position < len(call.args) else None)
        if isinstance(target, ast.Name):
            yield target
