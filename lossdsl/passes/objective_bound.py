"""W402 for an objective whose weights carry gradient (a learned param in a weight).

Term by term, uncertainty weighting (Kendall et al. 2018) looks unbounded:

    param s = 0 learned
    term reg = s
    minimize exp(-s) * task + reg

`reg` alone runs to -inf as `s` does. The objective as a whole does not, when `task ≥ 0`:
for a fixed `task > 0`, `exp(-s)·task + s` is least at `s = log(task)`, where it is
`1 + log(task)`. So when a weight carries gradient, W402 is judged on the objective:

- each term is split into a part affine in the learned params (`s_a + s_b`, `0.5 * s`)
  and the rest; the rest, times its weight, must be bounded below on its own, as a term
  is; each learned param collects the coefficient `K` of its affine part over the whole
  objective;
- a weight `C·exp(-a·s + b)` (C ≥ 0, a > 0) on a term ≥ 0 is a *barrier* for `s` going to
  -inf (with a < 0, to +inf): the product is ≥ 0 and outgrows any `K·s` there;
- `K·s` is bounded below where `s` is bounded by its range, or held by a barrier: K > 0
  needs one towards -inf, K < 0 one towards +inf;
- any other weighted term is judged by interval arithmetic (its weight's interval times
  the term's), which is sound: `s * task` with `s` unbounded is W402.

The barrier's bound assumes the term stays above 0 (its minimum over `s` is finite only
then), which is how the documented form is read: a loss that can reach exactly 0 makes
`s` run to -inf, as it does in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lossdsl.analysis import intervals as iv
from lossdsl.analysis.intervals import Interval
from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.ir import SpecIR
from lossdsl.passes.analysis import Analysis


def weights_carry_gradient(ir: SpecIR, facts: Analysis) -> bool:
    return any(facts[w].live for w in ir.weights.values())


@dataclass
class _Learned:
    """What the objective does with one learned param."""

    coefficient: Interval = field(default_factory=lambda: Interval.point(0.0))
    barrier_below: bool = False  # a term weighted exp(-a·s), a > 0, holds s → -inf
    barrier_above: bool = False  # one weighted exp(a·s), a > 0, holds s → +inf


def unbounded_objective(ir: SpecIR, facts: Analysis) -> list[Diagnostic]:
    """W402 for the parts of an objective, judged as a whole, that can run to -inf."""
    bound = _ObjectiveBound(ir, facts)
    return bound.run()


class _ObjectiveBound:
    def __init__(self, ir: SpecIR, facts: Analysis):
        self.ir = ir
        self.facts = facts
        self.learned_nodes = {p.node: p.name for p in ir.learned}
        self.learned = {node: _Learned() for node in self.learned_nodes}
        self.found: list[Diagnostic] = []

    def run(self) -> list[Diagnostic]:
        for term in self.ir.terms:
            weight = self.ir.weights[term.name]
            known = self.facts[weight]
            if known.interval == Interval.point(0.0):
                continue
            if known.live:
                self.weighted_by_gradient(term.name, term.node, weight, term.span)
            else:
                self.weighted_by_constant(term.name, term.node, known.fixed, term.span)
        for node, use in self.learned.items():
            self.check_affine_part(node, use)
        return self.found

    # ---- a term with a constant weight ---------------------------------------------------

    def weighted_by_constant(self, name: str, node: int, weight: Interval, span: Span) -> None:
        linear, rest = self.split(node)
        for learned, coefficient in linear.items():
            use = self.learned[learned]
            use.coefficient = iv.add(use.coefficient, iv.mul(weight, Interval.point(coefficient)))
        for part, coefficient in rest:
            value = iv.mul(weight, iv.mul(Interval.point(coefficient), self.facts[part].fixed))
            if not value.is_bounded_below():
                self.report_term(name, span)
                return

    def split(self, root: int) -> tuple[dict[int, float], list[tuple[int, float]]]:
        """`root` as Σ c·s over learned params s plus Σ c·r over the other parts r, through
        sums, differences, negations and products with numbers."""
        linear: dict[int, float] = {}
        rest: list[tuple[int, float]] = []
        pending = [(root, 1.0)]
        while pending:
            node_id, coefficient = pending.pop()
            node = self.ir.node(node_id)
            number = self.number_factor(node)
            if node.op == "alias":
                pending.append((node.args[0], coefficient))
            elif node_id in self.learned_nodes:
                linear[node_id] = linear.get(node_id, 0.0) + coefficient
            elif node.op in ("add", "sub"):
                sign = -1.0 if node.op == "sub" else 1.0
                pending += [(node.args[0], coefficient), (node.args[1], sign * coefficient)]
            elif node.op == "neg":
                pending.append((node.args[0], -coefficient))
            elif number is not None:
                factor, other = number
                pending.append((other, coefficient * factor))
            else:
                rest.append((node_id, coefficient))
        return linear, rest

    def number_factor(self, node) -> tuple[float, int] | None:
        """`c * x`, `x * c`, `x / c` with c a number: (c or 1/c, x)."""
        if node.op not in ("mul", "div") or len(node.args) != 2:
            return None
        a, b = node.args
        sides = [(b, a)] if node.op == "div" else [(a, b), (b, a)]
        for number_side, other in sides:
            value = self.facts[number_side].interval
            if value.is_point and math.isfinite(value.lo) and value.lo != 0:
                return (value.lo if node.op == "mul" else 1 / value.lo), other
        return None

    # ---- a term whose weight carries gradient ----------------------------------------------

    def weighted_by_gradient(self, name: str, node: int, weight: int, span: Span) -> None:
        term = self.facts[node]
        value = iv.mul(self.facts[weight].fixed, term.fixed)
        if not value.is_bounded_below():
            self.report_term(name, span, weighted=True)
            return
        barrier = self.exponential_rate(weight)
        if barrier is not None and term.fixed.lo >= 0:
            learned, rate = barrier
            if rate < 0:
                self.learned[learned].barrier_below = True
            elif rate > 0:
                self.learned[learned].barrier_above = True

    def exponential_rate(self, weight: int) -> tuple[int, float] | None:
        """(s, a) when the weight is C·exp(a·s + b) for one learned param s, C ≥ 0 a value
        without gradient, b a number; None otherwise."""
        node = self.ir.node(weight)
        if node.op == "alias":
            return self.exponential_rate(node.args[0])
        if node.op == "exp":
            linear, rest = self.split(node.args[0])
            constant = all(not self.facts[part].live for part, _ in rest)
            if len(linear) == 1 and constant:
                ((learned, rate),) = linear.items()
                return learned, rate
            return None
        if node.op == "mul":
            a, b = node.args
            for factor, other in ((a, b), (b, a)):
                if self.constant_factor(factor):
                    return self.exponential_rate(other)
        if node.op == "div":
            a, b = node.args
            if self.constant_factor(b) and self.facts[b].interval.lo > 0:
                return self.exponential_rate(a)
            inner = self.exponential_rate(b) if self.constant_factor(a) else None
            if inner is not None:  # C / exp(a·s) = C·exp(-a·s)
                return inner[0], -inner[1]
        return None

    def constant_factor(self, node: int) -> bool:
        """A factor C ≥ 0 without gradient."""
        known = self.facts[node]
        return not known.live and known.interval.lo >= 0

    # ---- each learned param's affine part --------------------------------------------------

    def check_affine_part(self, node: int, use: _Learned) -> None:
        values = self.facts[node].interval
        k = use.coefficient
        falls_below = k.hi > 0 and not values.is_bounded_below() and not use.barrier_below
        falls_above = k.lo < 0 and not values.is_bounded_above() and not use.barrier_above
        if not (falls_below or falls_above):
            return
        name = self.learned_nodes[node]
        direction = "-inf" if falls_below else "inf"
        toward = f"exp(-{name})" if falls_below else f"exp({name})"
        span = self.ir.objective_span or self.ir.learned[0].span
        self.found.append(
            Diagnostic(
                "W402",
                f"the objective is unbounded below: it has a term linear in learned param "
                f"`{name}` (coefficient in {k}), and no term weighted by {toward} holds it "
                f"as `{name}` goes to {direction}",
                span,
                fix=f"weight a term ≥ 0 by {toward} (uncertainty weighting), or give "
                f"`{name}` a range",
            )
        )

    def report_term(self, name: str, span: Span, weighted: bool = False) -> None:
        how = " times its weight (which carries gradient)" if weighted else ""
        self.found.append(
            Diagnostic(
                "W402",
                f"term `{name}`{how} is unbounded below in its `grad` inputs and learned "
                "params (it can reach -inf for fixed values of the other inputs): "
                "minimizing it can run to -inf",
                span,
                fix="bound it, e.g. clip the ratio as PPO does, or declare tighter ranges",
            )
        )
