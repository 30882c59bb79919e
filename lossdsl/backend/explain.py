"""`lossdsl explain`: the IR as a table, then the generated fx code."""

from __future__ import annotations

from lossdsl.backend.lowering import lower, readable_code
from lossdsl.ir import SpecIR
from lossdsl.passes.evaluate import Schedules


def ir_table(ir: SpecIR) -> str:
    rows = []
    for node in ir.nodes:
        args = ", ".join(f"%{a}" for a in node.args)
        attrs = ", ".join(f"{k}={v}" for k, v in node.attrs.items() if k != "present")
        inside = ", ".join(p for p in (args, attrs) if p)
        label = f"  {node.name}" if node.name else ""
        rows.append(f"%{node.id:<3} = {node.op}({inside}) : {node.type}{label}")
    return "\n".join(rows)


def schedule_table(ir: SpecIR) -> str:
    """Each param and weight that follows `step`, at a few steps."""
    rows = []
    schedules = Schedules(ir)  # one for all rows: a chain of params is evaluated once
    named = [(p.name, p.node) for p in ir.params]
    named += [(f"weight of {term}", node) for term, node in ir.weights.items()]
    for label, node in named:
        if not schedules.depends_on_step(node):
            continue
        values = ", ".join(
            f"{step:g} → {schedules.value(node, step):.6g}" for step in schedules.sample_steps(node)
        )
        rows.append(f"  {label}: {values}")
    return "\n".join(rows)


def explain_text(ir: SpecIR) -> str:
    parts = [f"loss {ir.name}", f"  {ir.doc}" if ir.doc else "", ""]
    parts.append(
        "inputs: "
        + ", ".join(
            f"{i.name}: {i.dtype}[{', '.join(map(str, i.dims))}]{' grad' if i.grad else ''}"
            for i in ir.inputs
        )
    )
    if ir.params:
        parts.append(
            "params: "
            + ", ".join(
                f"{p.name} = {p.default if p.default is not None else 'schedule'}"
                for p in ir.params
            )
        )
    schedules = schedule_table(ir)
    if schedules:
        parts += ["", "schedules (value at each step):", schedules]
    parts += ["", "IR:", ir_table(ir), "", "generated torch.fx code:", readable_code(lower(ir))]
    return "\n".join(parts)
