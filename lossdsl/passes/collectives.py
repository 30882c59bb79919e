"""E206: `global_sum` of a value that carries gradient, or of another `global_sum`.

A sum over ranks is a normaliser (a token count, a number of sequences): the collective that
computes it has no gradient of its own, so a value with gradient there would silently lose
it on every other rank. A `global_sum` inside another's argument would need a second round
of collectives in `begin_step` (its totals are one all-reduce for every `global_sum` of the
step): sum the inner value first (`global_sum(a + b)`, `world_size * global_sum(a)`).
"""

from __future__ import annotations

from lossdsl.diagnostics import Diagnostic
from lossdsl.ir import SpecIR
from lossdsl.passes.analysis import Analysis


def check_global_sums(ir: SpecIR) -> tuple[SpecIR, list[Diagnostic]]:
    sums = [n for n in ir.nodes if n.op == "global_sum"]
    if not sums:
        return ir, []
    facts = Analysis(ir)
    carries = _carrying_gradient(ir, facts)
    found = [
        Diagnostic(
            "E206",
            "global_sum() of a value that carries gradient: the sum over ranks passes none back",
            node.span,
            fix="sum a count or a detached value: global_sum(count(mask)), global_sum(detach(x))",
        )
        for node in sums
        if carries[node.args[0]]
    ]
    reads_a_sum = _reading_global_sums(ir)
    found += [
        Diagnostic(
            "E206",
            "global_sum() of a value that reads another global_sum(): the totals of a step "
            "are summed over the ranks in one collective, so one cannot feed another",
            node.span,
            fix="sum over ranks once, at the outside: world_size * global_sum(x) for "
            "global_sum(global_sum(x))",
        )
        for node in sums
        if (reads_a_sum[node.args[0]] or ir.node(node.args[0]).op == "global_sum")
        and not carries[node.args[0]]
    ]
    return ir, found


def _carrying_gradient(ir: SpecIR, facts: Analysis) -> dict[int, bool]:
    """Per node: whether autograd gives its value a gradient. The analysis's `live` follows a
    comparison (`x > 0` is a step of `x`); autograd does not: a bool value, and a count of one,
    carry none, so `global_sum(count(x > 0))` is a normaliser like `global_sum(count(mask))`."""
    carries: dict[int, bool] = {}
    for node in ir.nodes:
        live = facts[node.id].live and node.type.kind == "float"
        carries[node.id] = live and (not node.args or any(carries[a] for a in node.args))
    return carries


def _reading_global_sums(ir: SpecIR) -> dict[int, bool]:
    """Per node: whether its value reads some `global_sum` (the table is in SSA order)."""
    reads: dict[int, bool] = {}
    for node in ir.nodes:
        reads[node.id] = any(reads[a] or ir.node(a).op == "global_sum" for a in node.args)
    return reads
