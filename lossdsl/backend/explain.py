"""`lossdsl explain`: the IR as a table, then the generated fx code."""

from __future__ import annotations

from lossdsl.backend.lowering import lower
from lossdsl.ir import SpecIR


def ir_table(ir: SpecIR) -> str:
    rows = []
    for node in ir.nodes:
        args = ", ".join(f"%{a}" for a in node.args)
        attrs = ", ".join(f"{k}={v}" for k, v in node.attrs.items() if k != "present")
        inside = ", ".join(p for p in (args, attrs) if p)
        label = f"  {node.name}" if node.name else ""
        rows.append(f"%{node.id:<3} = {node.op}({inside}) : {node.type}{label}")
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
    parts += ["", "IR:", ir_table(ir), "", "generated torch.fx code:", lower(ir).code.strip()]
    return "\n".join(parts)
