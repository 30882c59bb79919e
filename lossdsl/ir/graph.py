"""The IR being built: its node table, its diagnostics, and the scopes expressions are
built in. Shared by the parts of the builder (declarations, expressions, calls, objective).

Nodes are added bottom-up, so every node's operands come before it, and each node's value
is folded as it is added when it is built from numbers alone. Inside a def, equal nodes
are created once (hash-consing), so a def body inlined twice on the same values is one
set of nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.ir.model import Node
from lossdsl.ir.types import TensorType
from lossdsl.ops import OPS

SCALAR_FLOAT = TensorType("float", ())
INT64_LIMIT = 2.0**63  # integers from here on (in magnitude) do not fit in an int64


class Failed(Exception):
    """A sub-expression already reported an error; its parents stay quiet."""


@dataclass(frozen=True)
class DimAlias:
    """A def argument that names a dim (`def f(x, d) = softmax(x, dim=d)`)."""

    name: str


@dataclass
class DefCall:
    name: str
    call_span: Span

    def describe(self) -> str:
        return f"`{self.name}` called at {self.call_span}"


@dataclass
class Scope:
    """What names mean while building one expression."""

    locals: dict[str, int | DimAlias] = field(default_factory=dict)
    calls: tuple[DefCall, ...] = ()
    via: tuple[str, ...] = ()  # the calls as nodes record them (`Node.via`), at most a few
    in_def: str | None = None
    params_only: bool = False  # a param's value or a weight: numbers, params and step only
    misuse_code: str = "E201"  # what using an input there is: E203 inside a weight
    adaptive: bool = False  # with params_only: learned params and states too (a weight)

    def inside(self, call: DefCall, bindings: dict[str, int | DimAlias]) -> Scope:
        """The scope of a def's body, called from this scope."""
        calls = (*self.calls, call)
        return Scope(
            locals=bindings,
            calls=calls,
            via=_trail(calls),
            in_def=call.name,
            params_only=self.params_only,
            misuse_code=self.misuse_code,
            adaptive=self.adaptive,
        )


class Graph:
    """The node table being built, with what is known about each node."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.diagnostics: list[Diagnostic] = []
        self.folded: list[float | None] = []  # per node: its value when built from numbers
        self.within_defs: dict[tuple, int] = {}  # a node built inside a def, by its content

    def error(
        self,
        code: str,
        message: str,
        span: Span,
        fix: str | None = None,
        scope: Scope | None = None,
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
        scope: Scope | None = None,
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

    def describe(self, node_id: int) -> str:
        node = self.nodes[node_id]
        return f"`{node.name}`" if node.name else "the operand"

    def constant(self, value: float, span: Span) -> int:
        return self.add("const", (), {"value": value}, SCALAR_FLOAT, span)

    def fold(self, node_id: int) -> float | None:
        """The value of a node built from numbers alone (None otherwise)."""
        return self.folded[node_id]

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


VIA_KEPT = 8  # calls a node records: the outermost and innermost four of a deeper trail


def _trail(calls: tuple[DefCall, ...]) -> tuple[str, ...]:
    """How nodes record the def calls they were inlined through (outermost first): all of
    them, or for defs nested deeper, the outer and inner ends and how many lie between."""
    if len(calls) <= VIA_KEPT:
        return tuple(c.describe() for c in calls)
    half = VIA_KEPT // 2
    between = f"… {len(calls) - 2 * half} calls in between …"
    ends = [c.describe() for c in (*calls[:half], *calls[-half:])]
    return (*ends[:half], between, *ends[half:])


def _frozen(value: Any) -> Any:
    """Attributes as a hashable key (lists and dicts become tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value
