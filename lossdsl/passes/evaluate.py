"""Scalar values of IR nodes built from numbers, params and `step` (schedules, weights).

`Schedules` answers for one IR and remembers what it worked out, so that `lossdsl explain`
on a chain of thousands of params costs the chain once, not once per param. Every walk
uses a stack of its own: no recursion on the depth of an expression.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from lossdsl.ir import Node, SpecIR
from lossdsl.ops import OPS

T = TypeVar("T")


class Schedules:
    """Values at given steps, step dependence and the steps worth showing, for one IR."""

    def __init__(self, ir: SpecIR, params: dict[str, float] | None = None):
        self.ir = ir
        self.params = params or {}
        # a param left at its declared default reads its default expression
        self.default_of = {p.node: p.default_node for p in ir.params}
        self.defaults = {p.node: p.default_node for p in ir.params if p.name not in self.params}
        self.values: dict[float, dict[int, float | None]] = {}
        self.following_step: dict[int, bool] = {}
        self.marks: dict[int, frozenset[float]] = {}

    def operands(self, node: Node) -> list[int]:
        """The nodes `node`'s scalar value is computed from."""
        if node.op == "param":
            return [self.defaults[node.id]] if node.id in self.defaults else []
        op = OPS.get(node.op)
        if node.op == "alias" or (op is not None and op.scalar is not None):
            return list(node.args)
        return []

    def value(self, node_id: int, step: float = 0.0) -> float | None:
        """The node's value at `step`, or None when it depends on a tensor input."""
        known = self.values.setdefault(step, {})
        return _bottom_up(self.ir, node_id, known, self.operands, self.evaluate_at(step))

    def evaluate_at(self, step: float) -> Callable[[Node, list], float | None]:
        def evaluate(node: Node, args: list[float | None]) -> float | None:
            if node.op == "const":
                return float(node.attrs["value"])
            if node.op == "step":
                return step
            if node.op == "param":
                return args[0] if args else self.params[node.attrs["name"]]
            if node.op == "alias":
                return args[0]
            op = OPS.get(node.op)
            values = [a for a in args if a is not None]
            if op is None or op.scalar is None or len(values) != len(args):
                return None
            if op.group == "schedule":
                if node.op == "piecewise":
                    return op.scalar(step, node.attrs["boundaries"], node.attrs["values"])
                return op.scalar(step, *values)
            return op.scalar(*values)

        return evaluate

    def depends_on_step(self, node_id: int) -> bool:
        """Whether the node's value follows `step` (through schedules and params)."""

        def follows(node: Node, args: list[bool]) -> bool:
            op = OPS.get(node.op)
            return node.op == "step" or (op is not None and op.group == "schedule") or any(args)

        return _bottom_up(self.ir, node_id, self.following_step, self.reads, follows)

    def reads(self, node: Node) -> list[int]:
        """Every node `node` reads: its arguments, and a param's default expression."""
        if node.op == "param":
            return [self.default_of[node.id]]
        return list(node.args)

    def sample_steps(self, node_id: int) -> list[float]:
        """Steps worth showing for a schedule: 0, and around every step count it mentions."""

        def own_marks(node: Node, args: list[frozenset[float]]) -> frozenset[float]:
            marks: set[float] = {0.0}.union(*args)
            op = OPS.get(node.op)
            if op is not None and op.group == "schedule":
                marks.update(float(b) for b in node.attrs.get("boundaries", ()))
                counts = node.args[:1] if node.op == "warmup" else node.args[2:]
                numbers = [self.value(a) for a in counts]
                total = sum(n for n in numbers if n is not None and n > 0)
                marks.update({total / 4, total / 2, total, 2 * total})
            return frozenset(marks)

        marks: frozenset[float] = _bottom_up(self.ir, node_id, self.marks, self.reads, own_marks)
        return sorted(marks)


def _bottom_up(
    ir: SpecIR,
    root: int,
    known: dict[int, T],
    operands: Callable[[Node], list[int]],
    combine: Callable[[Node, list[T]], T],
) -> T:
    """`combine(node, [results of its operands])` for `root`, operands first, each node
    once (results kept in `known`), from a stack of its own."""
    pending = [root]
    while pending:
        current = pending[-1]
        if current in known:
            pending.pop()
            continue
        node = ir.node(current)
        needs = operands(node)
        waiting = [n for n in needs if n not in known]
        if waiting:
            pending += waiting
            continue
        pending.pop()
        known[current] = combine(node, [known[n] for n in needs])
    return known[root]


def scalar_value(
    ir: SpecIR, node_id: int, step: float = 0.0, params: dict[str, float] | None = None
) -> float | None:
    """The node's value at `step`, or None when it depends on a tensor input."""
    return Schedules(ir, params).value(node_id, step)


def depends_on_step(ir: SpecIR, node_id: int) -> bool:
    return Schedules(ir).depends_on_step(node_id)


def sample_steps(ir: SpecIR, node_id: int) -> list[float]:
    """Steps worth showing for a schedule: 0, and around every step count it mentions."""
    return Schedules(ir).sample_steps(node_id)
