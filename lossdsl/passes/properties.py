"""Per-term properties (LANGUAGE.md's Properties table) and W400–W402.

Sound: a property is `proven` only when the analysis shows it; `not proven` is always
allowed. With respect to the `grad` inputs; detached values and other inputs are fixed.
"""

from __future__ import annotations

from lossdsl.analysis.curvature import Smoothness, differentiable_label
from lossdsl.diagnostics import Diagnostic
from lossdsl.ir import SpecIR
from lossdsl.passes.analysis import Analysis, NodeFacts
from lossdsl.passes.objective_bound import unbounded_objective, weights_carry_gradient


def prove_properties(ir: SpecIR) -> tuple[SpecIR, list[Diagnostic]]:
    facts = Analysis(ir)
    properties: dict[str, dict[str, str]] = {}
    diagnostics: list[Diagnostic] = []
    grads = ", ".join(
        [f"`{i.name}`" for i in ir.inputs if i.grad] + [f"learned `{p.name}`" for p in ir.learned]
    )
    grads = grads or "none declared"
    # Where a weight carries gradient, boundedness is a property of the objective as a whole.
    as_a_whole = weights_carry_gradient(ir, facts)
    if as_a_whole:
        diagnostics += unbounded_objective(ir, facts)
    for term in ir.terms:
        known = facts[term.node]
        properties[term.name] = describe(known)
        if not known.live:
            diagnostics.append(
                Diagnostic(
                    "W400",
                    f"term `{term.name}` does not depend on any `grad` input "
                    f"({grads}): its gradient is always zero",
                    term.span,
                    fix="mark the prediction it should train with `grad`",
                )
            )
        elif known.smooth is Smoothness.ZERO_GRADIENT:
            diagnostics.append(
                Diagnostic(
                    "W401",
                    f"term `{term.name}` depends on the `grad` inputs only through "
                    "piecewise-constant ops (comparisons, sign, rounding, count): its gradient "
                    "is zero",
                    term.span,
                    fix="use a smooth surrogate, e.g. sigmoid(k * x)",
                )
            )
        elif known.fixed.lo == float("-inf") and not as_a_whole:
            diagnostics.append(
                Diagnostic(
                    "W402",
                    f"term `{term.name}` is unbounded below in its `grad` inputs "
                    f"(it can reach {known.fixed.lo:g} for fixed values of the other inputs): "
                    "minimizing it can run to -inf",
                    term.span,
                    fix="bound it, e.g. clip the ratio as PPO does, or declare tighter ranges",
                )
            )
    return ir.model_copy(update={"properties": properties}), diagnostics


def describe(known: NodeFacts) -> dict[str, str]:
    return {
        "differentiable": differentiable_label(known.smooth),
        "continuous": "yes" if known.continuous else "not proven",
        "bounds": str(known.interval),
        "convex": "proven" if known.curvature.is_convex else "not proven",
        "gradient_bounded": "proven" if known.gradient_bounded else "not proven",
    }
