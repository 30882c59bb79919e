"""Numerical hazards, W300–W304: what would produce NaN, inf, or lose precision at run time.

Every test reads a fact of the op table (domain, overflow limit, steep points, precision
sensitivity) against the intervals of the analysis.
"""

from __future__ import annotations

import re
from functools import cached_property

from lossdsl.analysis import intervals as iv
from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.ir import Node, SpecIR
from lossdsl.ops import OPS
from lossdsl.passes.analysis import Analysis

LOW_PRECISION = {"bf16", "f16"}


def find_hazards(ir: SpecIR) -> tuple[SpecIR, list[Diagnostic]]:
    facts = Analysis(ir)
    found = _Hazards(ir, facts)
    for node in ir.nodes:
        found.check(node)
    return ir, found.diagnostics


class _Hazards:
    def __init__(self, ir: SpecIR, facts: Analysis):
        self.ir = ir
        self.facts = facts
        self.diagnostics: list[Diagnostic] = []
        self.reported: set[tuple[str, Span]] = set()
        self.low_precision = self.reaching_low_precision()

    def report(self, code: str, message: str, node: Node, fix: str | None = None) -> None:
        if (code, node.span) in self.reported:
            return
        self.reported.add((code, node.span))
        notes = tuple(f"inlined from {via}" for via in node.via)
        self.diagnostics.append(Diagnostic(code, message, node.span, fix, notes))

    def text(self, node_id: int) -> str:
        """The source text of a node, for fixes that quote the user's expression."""
        span = self.ir.node(node_id).span
        lines = self.source_lines.get(span.file)
        if lines is None:
            return "x"
        if span.line == span.end_line and 1 <= span.line <= len(lines):
            return lines[span.line - 1][span.col - 1 : span.end_col - 1]
        return "x"

    def check(self, node: Node) -> None:
        op = OPS.get(node.op)
        if op is None:
            return
        facts = op.facts
        args = [self.facts[a] for a in node.args]
        intervals = [a.interval for a in args]
        names = self.facts.arg_names(node)
        for name, allowed in facts.domain(intervals, node.attrs).items():
            if name in names:
                index = names.index(name)
                if iv.admits_outside(intervals[index], allowed):
                    self.outside_domain(
                        node, node.args[index], name, intervals[index], allowed, facts.fix
                    )
        result = self.facts[node.id].interval
        if facts.overflows is not None and facts.overflows(intervals, result):
            self.overflow(node, intervals, result)
        if args and args[0].live and facts.steep is not None and facts.steep(intervals):
            self.report(
                "W302",
                f"{op.name}() has an infinite gradient at 0, which its argument can reach "
                f"(it lies in {intervals[0]})",
                node,
                fix=f"keep it away from 0, e.g. clamp({self.text(node.args[0])}, min=1e-12)",
            )
        if facts.selects:
            self.leaking_where(node)
        if facts.precision_sensitive and node.id in self.low_precision:
            source = self.low_precision[node.id]
            self.report(
                "W304",
                f"{op.name}() reads input `{source}` declared "
                f"{self.ir.input(source).dtype}: it is computed upcast to float32",
                node,
            )

    def outside_domain(
        self,
        node: Node,
        arg: int,
        name: str,
        interval: iv.Interval,
        allowed: object,
        fix: str | None,
    ) -> None:
        guard = self.guarding_where(node.id)
        if guard is not None:  # the where masks the value; only a gradient can leak
            if self.facts[node.id].live:
                self.leak(guard)
            return
        facts = OPS[node.op].facts
        phrase = facts.pole_message if interval.contains(0) else None
        if phrase is None:
            domain = " or ".join(map(str, allowed)) if isinstance(allowed, tuple) else allowed
            phrase = "{op}() needs its argument `{name}` in {domain}, but it lies in {interval}"
        else:
            domain = ""
        message = self.fill(phrase, node, arg, name=name, domain=domain, interval=interval)
        self.report("W300", message, node, fix=self.fill(fix, node, arg) if fix else None)

    def fill(self, template: str, node: Node, arg: int, **values: object) -> str:
        """A message or fix template: `{x}` is the offending argument's text, `{0}`, `{1}`
        the arguments' texts, other names as given."""
        known = {str(i): self.text(a) for i, a in enumerate(node.args)}
        known.update(x=self.text(arg), op=node.op, **{k: str(v) for k, v in values.items()})
        return re.sub(r"\{(\w+)\}", lambda m: known.get(m.group(1), m.group(0)), template)

    def overflow(self, node: Node, intervals: list[iv.Interval], result: iv.Interval) -> None:
        facts = OPS[node.op].facts
        message = facts.overflow_message or "{op}() can overflow float32: it reaches {result}"
        self.report(
            "W301",
            self.fill(message, node, node.args[0], result=result, interval=intervals[0]),
            node,
            fix=self.fill(facts.overflow_fix, node, node.args[0]) if facts.overflow_fix else None,
        )

    def guarding_where(self, node_id: int) -> Node | None:
        """The `where` whose branch this node feeds, through elementwise ops, if any."""
        if node_id not in self.near_where:
            return None  # no search: searching from every hazard made check quadratic
        frontier = [node_id]
        seen = set()
        while frontier:
            current = frontier.pop()
            for user in self.facts.users.get(current, []):
                if user in seen:
                    continue
                seen.add(user)
                user_node = self.ir.node(user)
                selects = OPS.get(user_node.op) is not None and OPS[user_node.op].facts.selects
                if selects and user_node.args[0] != current:
                    return user_node
                op = OPS.get(user_node.op)
                if op is not None and op.group == "elementwise":
                    frontier.append(user)
        return None

    @cached_property
    def source_lines(self) -> dict[str, list[str]]:
        """Each source's lines, split once (not once per quoted expression)."""
        return {file: text.split("\n") for file, text in self.ir.sources.items()}

    @cached_property
    def near_where(self) -> set[int]:
        """The nodes that reach some `where` through elementwise ops (a superset of those
        `guarding_where` finds one for), in one pass from the last node back."""
        near: set[int] = set()
        for node in reversed(self.ir.nodes):
            for user in self.facts.users.get(node.id, []):
                op = OPS.get(self.ir.node(user).op)
                if op is not None and (
                    op.facts.selects or (op.group == "elementwise" and user in near)
                ):
                    near.add(node.id)
                    break
        return near

    def leaking_where(self, node: Node) -> None:
        for branch in node.args[1:]:
            facts = self.facts[branch]
            if facts.live and not facts.interval.is_finite():
                self.leak(node)

    def leak(self, node: Node) -> None:
        self.report(
            "W303",
            "a branch of where(c, a, b) can be non-finite where it is not "
            "selected: its NaN gradient still flows into the `grad` inputs",
            node,
            fix="guard the argument too: where(c, f(where(c, x, safe)), other)",
        )

    def reaching_low_precision(self) -> dict[int, str]:
        """Nodes whose value comes from an input declared bf16/f16, with that input."""
        sources = {i.node: i.name for i in self.ir.inputs if i.dtype in LOW_PRECISION}
        reached: dict[int, str] = {}
        for node in self.ir.nodes:
            for arg in node.args:
                origin = sources.get(arg) or (reached.get(arg) if self.elementwise(arg) else None)
                if origin is not None:
                    reached[node.id] = origin
                    break
        return reached

    def elementwise(self, node_id: int) -> bool:
        op = OPS.get(self.ir.node(node_id).op)
        return op is not None and op.group == "elementwise"
