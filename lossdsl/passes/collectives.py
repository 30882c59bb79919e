"""E206: `global_sum` of a value that carries gradient.

A sum over ranks is a normaliser (a token count, a number of sequences): the collective that
computes it has no gradient of its own, so a value with gradient there would silently lose
it on every other rank.
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
    found = [
        Diagnostic(
            "E206",
            "global_sum() of a value that carries gradient: the sum over ranks passes none back",
            node.span,
            fix="sum a count or a detached value: global_sum(count(mask)), global_sum(detach(x))",
        )
        for node in sums
        if facts[node.args[0]].live
    ]
    return ir, found
