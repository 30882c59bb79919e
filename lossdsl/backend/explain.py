"""`lossdsl explain`: the IR as a table, then the generated fx code."""

from __future__ import annotations

from lossdsl.backend.lowering import lower, readable_code
from lossdsl.diagnostics import Span
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


def adaptive_table(ir: SpecIR) -> str:
    """Each state with its update rule, each `ema` with its average's, each learned param."""
    rows = []
    states = [s for s in ir.states if s.reported]
    if states or ir.emas:
        rows.append("states (kept across calls, updated after each call in training mode):")
    for state in states:
        rows.append(f"  {written(ir, state.span)}")
    for ema in ir.emas:
        decay = ir.node(ema.node).attrs["decay"]
        rows.append(
            f"  {ema.name}: {written(ir, ema.span)}: m ← {decay:g}·m + {1 - decay:g}·x, "
            f"n ← n + 1; it reads m / (1 − {decay:g}ⁿ) (x before the first training call)"
        )
    if ir.learned:
        rows.append("learned params (nn.Parameter, trained with the model):")
        rows += [f"  {written(ir, p.span)}" for p in ir.learned]
    return "\n".join(rows)


def written(ir: SpecIR, span: Span) -> str:
    """The spec's text at `span` on one line, without comments."""
    lines = ir.sources.get(span.file, "").split("\n")[span.line - 1 : span.end_line]
    if not lines:
        return "?"
    lines[-1] = lines[-1][: span.end_col - 1]
    lines[0] = lines[0][span.col - 1 :]
    code = " ".join(line.split("#", 1)[0] for line in lines)
    return " ".join(code.split())


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
    adaptive = adaptive_table(ir)
    if adaptive:
        parts += ["", adaptive]
    parts += ["", "IR:", ir_table(ir), "", "generated torch.fx code:", readable_code(lower(ir))]
    return "\n".join(parts)
