"""What is known about every node of a spec, read off the op table's facts.

For each node, bottom-up: its interval (sound: every value it can take over the declared
ranges), a second interval where each value the optimizer does not move (non-`grad`
inputs, params, detached values) is some fixed finite number (for W402 and gradient
bounds), whether it depends on a `grad` input, its smoothness, curvature (DCP, with
respect to the `grad` inputs), continuity, and whether its gradient stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

from lossdsl.analysis import curvature as dcp
from lossdsl.analysis import intervals as iv
from lossdsl.analysis.curvature import Curvature, Smoothness
from lossdsl.analysis.intervals import Interval
from lossdsl.ir import Node, SpecIR
from lossdsl.ir.model import RangeSpec
from lossdsl.ops import OPS
from lossdsl.ops.facts import Facts

FINITE = Interval(-math.inf, math.inf, False, False)  # finite, value unknown
STEPS = Interval(0, math.inf, True, False)


@dataclass(frozen=True)
class NodeFacts:
    interval: Interval  # sound over the declared ranges
    fixed: Interval  # with everything the optimizer does not move held at a finite value
    live: bool  # depends on a `grad` input (through something that passes gradient)
    smooth: Smoothness
    curvature: Curvature
    continuous: bool
    gradient_bounded: bool


def declared(rng: RangeSpec | None, kind: str) -> Interval:
    if kind == "bool":
        return iv.UNIT
    if rng is None:
        return FINITE
    lo = -math.inf if isinstance(rng.lo, str) and rng.lo.startswith("-") else rng.lo
    hi = rng.hi
    # A dim-name bound (`in [0, V)`) is some size ≥ 1: unknown, so unbounded.
    lo = 0.0 if isinstance(lo, str) else float(lo)
    hi = math.inf if isinstance(hi, str) else float(hi)
    lo_closed = rng.lo_closed and not math.isinf(lo)
    hi_closed = rng.hi_closed and not math.isinf(hi)
    return Interval(lo, hi, lo_closed, hi_closed)


def held_fixed(interval: Interval) -> Interval:
    """A closed, finite stand-in for "some fixed value of this interval": infinite ends are
    pulled in and open ends stepped inside, so that "bounded for every fixed value" reads
    as "bounded" in interval arithmetic (for a value in (0, inf), log of it is finite)."""
    if interval.is_empty or interval.is_point:
        return interval
    lo, hi = interval.lo, interval.hi
    if not math.isfinite(lo):
        lo = (hi if math.isfinite(hi) else 1.0) - 2.0
    if not math.isfinite(hi):
        hi = lo + 2.0
    margin = (hi - lo) / 4
    if math.isfinite(interval.lo) and not interval.lo_closed:
        lo += margin
    if math.isfinite(interval.hi) and not interval.hi_closed:
        hi -= margin
    return Interval(lo, hi, True, True)


class Analysis:
    """Facts about every node of one IR, computed once, in node order."""

    def __init__(self, ir: SpecIR):
        self.ir = ir
        self.facts: list[NodeFacts] = []
        self.param_by_node = {p.node: p for p in ir.params}
        self.input_by_node = {i.node: i for i in ir.inputs}
        self.learned_by_node = {p.node: p for p in ir.learned}
        self.state_values = StateValues(ir)
        while True:
            self.facts = []
            for node in ir.nodes:
                self.facts.append(self.of(node))
            if not self.state_values.widen(self.facts):
                break

    def __getitem__(self, node_id: int) -> NodeFacts:
        return self.facts[node_id]

    @cached_property
    def users(self) -> dict[int, list[int]]:
        found: dict[int, list[int]] = {}
        for node in self.ir.nodes:
            for arg in node.args:
                found.setdefault(arg, []).append(node.id)
        return found

    def op_facts(self, node: Node) -> Facts | None:
        op = OPS.get(node.op)
        return op.facts if op is not None else None

    # ---- leaves -----------------------------------------------------------------------

    def leaf(
        self, interval: Interval, live: bool = False, fixed: Interval | None = None
    ) -> NodeFacts:
        return NodeFacts(
            interval=interval,
            fixed=fixed if fixed is not None else (interval if live else held_fixed(interval)),
            live=live,
            smooth=Smoothness.SMOOTH if live else Smoothness.CONSTANT,
            curvature=dcp.AFFINE if live else dcp.CONSTANT,
            continuous=True,
            gradient_bounded=True,
        )

    def of(self, node: Node) -> NodeFacts:
        if node.op == "const":
            return self.leaf(Interval.point(float(node.attrs["value"])))
        if node.op == "step":
            return self.leaf(STEPS)
        if node.op == "input":
            given = self.input_by_node[node.id]
            return self.leaf(declared(given.range, node.type.kind), live=given.grad)
        if node.op == "learned":  # trained like a `grad` input, over its range
            learned = self.learned_by_node[node.id]
            return self.leaf(declared(learned.range, "float"), live=True)
        if node.op == "state":  # a finite value the optimizer does not move
            return self.leaf(self.state_values.interval(node.id, self.facts))
        if node.op == "param":
            param = self.param_by_node[node.id]
            if param.range is not None:
                return self.leaf(declared(param.range, "float"))
            if param.default is None:  # a schedule: analysed over its values at every step
                return self.leaf(self.facts[param.default_node].interval)
            return self.leaf(FINITE)
        if node.op == "alias":
            return self.facts[node.args[0]]
        facts = self.op_facts(node)
        if facts is None:
            return self.leaf(iv.Interval.extended())
        return self.apply(node, facts)

    # ---- ops --------------------------------------------------------------------------

    def apply(self, node: Node, facts: Facts) -> NodeFacts:
        args = [self.facts[a] for a in node.args]
        intervals = [a.interval for a in args]
        fixed = [a.fixed for a in args]
        interval = self.special_value(node, facts, intervals) or facts.interval(
            intervals, node.attrs
        )
        live = any(a.live for a in args) and facts.smooth is not Smoothness.CONSTANT
        if facts.smooth is Smoothness.CONSTANT:  # detach: a fixed value from here on
            return self.leaf(interval, fixed=held_fixed(interval))
        sizes_fixed = {**node.attrs, "_sizes_fixed": True}
        fixed_interval = self.special_value(node, facts, fixed) or facts.interval(
            fixed, sizes_fixed
        )
        smooth = self.smoothness(node, facts, args)
        curvature = facts.curvature([a.curvature for a in args], intervals, node.attrs)
        continuous = all(a.continuous for a in args) and (
            facts.continuous or not any(a.live for a in args)
        )
        bounded = all(a.gradient_bounded for a in args if a.live) and self.partials_bounded(
            node, facts, args
        )
        return NodeFacts(interval, fixed_interval, live, smooth, curvature, continuous, bounded)

    def smoothness(self, node: Node, facts: Facts, args: list[NodeFacts]) -> Smoothness:
        own = facts.smooth
        if own is Smoothness.KINKED and facts.kinks and args:
            own = dcp.smoothness_over(own, facts.kinks, args[0].interval)
        return dcp.combine(own, [a.smooth for a in args])

    def partials_bounded(self, node: Node, facts: Facts, args: list[NodeFacts]) -> bool:
        """Whether the op's partial derivatives in its live arguments stay bounded: always
        for Lipschitz ops; for a product when the other factor is bounded; otherwise when
        every live argument ranges over a bounded set inside the op's domain."""
        if not any(a.live for a in args) or facts.lipschitz:
            return True
        fixed = [a.fixed for a in args]
        if facts.partials is not None:
            return facts.partials(fixed, [a.live for a in args])
        if any(not f.is_bounded() for f in fixed):
            return False
        domains = facts.domain(fixed, node.attrs)
        names = self.arg_names(node)
        closed = [Interval(f.lo, f.hi, True, True) for f in fixed]
        inside = all(
            not iv.admits_outside(closed[i], domains[n])
            for i, n in enumerate(names)
            if n in domains
        )
        steep = facts.steep is not None and facts.steep(closed)
        return inside and not steep

    def arg_names(self, node: Node) -> list[str]:
        op = OPS[node.op]
        present = node.attrs.get("present")
        return [a.name for a in op.tensor_args() if present is None or a.name in present]

    def special_value(self, node: Node, facts: Facts, intervals: list[Interval]) -> Interval | None:
        """What plain interval arithmetic cannot see: `x - detach(x)` is 0, and a `where`
        on a comparison of its own branch."""
        if facts.same_args is not None and len(node.args) == 2:
            if self.value_of(node.args[0]) == self.value_of(node.args[1]):
                return facts.same_args(intervals[0])
        return self.refined_where(node, intervals)

    def value_of(self, node_id: int) -> int:
        """The node whose value this one carries (through aliases and detach)."""
        node = self.ir.node(node_id)
        while node.op == "alias" or getattr(self.op_facts(node), "keeps_value", False):
            node = self.ir.node(node.args[0])
        return node.id

    def refined_where(self, node: Node, intervals: list[Interval]) -> Interval | None:
        """`where(x > c, x, b)`: where the condition holds, x is known to satisfy it."""
        if not getattr(self.op_facts(node), "selects", False):
            return None
        condition = self.ir.node(node.args[0])
        refine = getattr(self.op_facts(condition), "refine", None)
        if refine is None or len(condition.args) != 2:
            return None
        subject, bound = condition.args
        branches = []
        for branch, holds in ((node.args[1], True), (node.args[2], False)):
            value = intervals[1] if holds else intervals[2]
            if branch == subject:
                value = iv.intersect(value, refine(value, self.facts[bound].interval, holds))
            branches.append(value)
        return iv.hull(*branches)


class StateValues:
    """The values each state can hold: its declared range (its start and every update are
    clamped into it), or else what its start and its update can produce, found by
    iterating the update over the values assumed so far. An end that still moves after a
    few rounds is widened to ±inf: a state is always finite, its value otherwise unknown."""

    ROUNDS = 3  # rounds of iteration before widening

    def __init__(self, ir: SpecIR):
        self.states = {s.node: s for s in ir.states}
        self.ir = ir
        self.assumed: dict[int, Interval] = {}
        self.rounds = 0

    def interval(self, node_id: int, facts: list[NodeFacts]) -> Interval:
        state = self.states[node_id]
        if state.range is not None:
            return declared(state.range, "float")
        if node_id not in self.assumed:
            self.assumed[node_id] = self.start(state.init_node, facts)
        return self.assumed[node_id]

    def start(self, init_node: int, facts: list[NodeFacts]) -> Interval:
        if init_node < len(facts):
            return facts[init_node].interval
        node = self.ir.node(init_node)
        if node.op == "const":
            return Interval.point(float(node.attrs["value"]))
        return FINITE

    def widen(self, facts: list[NodeFacts]) -> bool:
        """Take in what the updates produced; True when an assumption grew (go again)."""
        grew = False
        for node_id, assumed in list(self.assumed.items()):
            produced = facts[self.states[node_id].update].interval
            both = iv.hull(assumed, iv.intersect(produced, FINITE))
            if both == assumed:
                continue
            grew = True
            if self.rounds >= self.ROUNDS:
                both = Interval(
                    both.lo if both.lo == assumed.lo else -math.inf,
                    both.hi if both.hi == assumed.hi else math.inf,
                    both.lo_closed if both.lo == assumed.lo else False,
                    both.hi_closed if both.hi == assumed.hi else False,
                )
            self.assumed[node_id] = both
        self.rounds += 1
        return grew
