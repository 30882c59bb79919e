"""Scalar values of IR nodes built from numbers, params and `step` (schedules, weights)."""

from __future__ import annotations

from lossdsl.ir import SpecIR
from lossdsl.ops import OPS


def scalar_value(
    ir: SpecIR, node_id: int, step: float = 0.0, params: dict[str, float] | None = None
) -> float | None:
    """The node's value at `step`, or None when it depends on a tensor input."""
    node = ir.node(node_id)
    if node.op == "const":
        return float(node.attrs["value"])
    if node.op == "step":
        return step
    if node.op == "alias":
        return scalar_value(ir, node.args[0], step, params)
    if node.op == "param":
        name = node.attrs["name"]
        if params and name in params:
            return params[name]
        spec = next(p for p in ir.params if p.node == node_id)
        return scalar_value(ir, spec.default_node, step, params)
    op = OPS.get(node.op)
    if op is None or op.scalar is None:
        return None
    args = [scalar_value(ir, a, step, params) for a in node.args]
    values = [a for a in args if a is not None]
    if len(values) != len(args):
        return None
    if op.group == "schedule":
        if node.op == "piecewise":
            return op.scalar(step, node.attrs["boundaries"], node.attrs["values"])
        return op.scalar(step, *values)
    return op.scalar(*values)


def depends_on_step(ir: SpecIR, node_id: int) -> bool:
    stack, seen = [node_id], set()
    while stack:
        current = stack.pop()
        node = ir.node(current)
        op = OPS.get(node.op)
        if node.op == "step" or (op is not None and op.group == "schedule"):
            return True
        if node.op == "param":
            spec = next(p for p in ir.params if p.node == current)
            stack.append(spec.default_node)
        if current not in seen:
            seen.add(current)
            stack.extend(node.args)
    return False


def sample_steps(ir: SpecIR, node_id: int) -> list[float]:
    """Steps worth showing for a schedule: 0, and around every step count it mentions."""
    marks: set[float] = {0.0}
    stack, seen = [node_id], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        node = ir.node(current)
        if node.op == "param":
            stack.append(next(p for p in ir.params if p.node == current).default_node)
        if OPS.get(node.op) is not None and OPS[node.op].group == "schedule":
            for boundary in node.attrs.get("boundaries", ()):
                marks.add(float(boundary))
            numbers = [scalar_value(ir, a) for a in node.args[2:] if node.op != "warmup"]
            if node.op == "warmup":
                numbers = [scalar_value(ir, node.args[0])]
            total = sum(n for n in numbers if n is not None and n > 0)
            marks.update({total / 4, total / 2, total, 2 * total})
        stack.extend(node.args)
    return sorted(marks)
