"""Numerical hazards, W300–W304: what would produce NaN, inf, or lose precision at run time.

Every test reads a fact of the op table (domain, overflow limit, steep points, precision
sensitivity) against the intervals of the analysis.

Hazards are found on the IR after the stability rewrites (a rewrite removes some), but they
are reported in the user's terms: a node a rewrite made carries the `Origin` of what the
user wrote, and its hazard is reported there, as the op the user called when the rewrite
names one (`expm1` made from `exp(x) - 1` overflows as the user's `exp(x)`: one W301, at
that `exp`), else as the user's expression "computed as" the rewritten form.
"""

from __future__ import annotations

import re
from functools import cached_property

from lossdsl.analysis import intervals as iv
from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.ir import Node, SpecIR
from lossdsl.ops import OPS
from lossdsl.ops.facts import Facts
from lossdsl.passes.analysis import Analysis
from lossdsl.passes.rewrites import spec_text

LOW_PRECISION = {"bf16", "f16"}
# The guard a fix template puts around an argument: `clamp({x}, min=1e-8)`.
GUARD = re.compile(r"clamp\(\{(\w+)\}[^()]*\)")


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
        """One diagnostic per code and place in the user's text: a hazard of a rewritten
        node and the same hazard of the user's op it was made from are one root cause."""
        span = node.origin.span if node.origin is not None else node.span
        if (code, span) in self.reported:
            return
        self.reported.add((code, span))
        notes = tuple(f"inlined from {via}" for via in node.via)
        self.diagnostics.append(Diagnostic(code, message, span, fix, notes))

    def source(self, span: Span) -> str | None:
        """The user's text at a one-line span."""
        lines = self.source_lines.get(span.file)
        if lines is None:
            return None
        if span.line == span.end_line and 1 <= span.line <= len(lines):
            return lines[span.line - 1][span.col - 1 : span.end_col - 1]
        return None

    def text(self, node_id: int) -> str:
        """A node as the user would write it, for messages and fixes: its name when it has
        one (an input, param or let is referred to by name), else its source text, or, for
        a node a rewrite made (whose span is the whole expression it replaced), the
        rewritten form spelled out from its arguments' texts."""
        node = self.ir.node(node_id)
        if node.name is not None:
            return node.name
        if node.origin is not None:
            return spec_text(node, self.ir.nodes, self.text)
        return self.source(node.span) or "x"

    def wording(self, node: Node) -> tuple[str, Facts]:
        """How messages name the op at `node` (`exp()`), and whose templates they use: the
        node's own op; for a node a rewrite made, the user's op it answers for; else the
        user's whole expression and what it is computed as."""
        origin = node.origin
        if origin is None:
            return f"{node.op}()", OPS[node.op].facts
        if origin.op is not None:
            return f"{origin.op}()", OPS[origin.op].facts
        written = self.source(origin.span)
        if written is None:
            return f"{node.op}()", OPS[node.op].facts
        rewritten = spec_text(node, self.ir.nodes, self.text)
        return f"`{written}` (computed as {rewritten})", OPS[node.op].facts

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
                    self.outside_domain(node, node.args[index], name, intervals[index], allowed)
        result = self.facts[node.id].interval
        if facts.overflows is not None and facts.overflows(intervals, result):
            self.overflow(node, intervals, result)
        if args and args[0].live and facts.steep is not None and facts.steep(intervals):
            message = facts.steep_message or (
                "{op}() has an infinite gradient at 0, which its argument can reach "
                "(it lies in {interval})"
            )
            fix = facts.steep_fix or "keep it away from 0, e.g. clamp({x}, min=1e-12)"
            self.report(
                "W302",
                self.fill(message, node, node.args[0], interval=intervals[0]),
                node,
                fix=self.fix(fix, node, node.args[0]),
            )
        if facts.selects:
            self.leaking_where(node)
        if facts.precision_sensitive and node.id in self.low_precision:
            source = self.low_precision[node.id]
            self.report(
                "W304",
                f"{self.wording(node)[0]} reads input `{source}` declared "
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
    ) -> None:
        guard = self.guarding_where(node.id)
        if guard is not None:  # the where masks the value; only a gradient can leak
            if self.facts[node.id].live:
                self.leak(guard)
            return
        _, facts = self.wording(node)
        pieces = allowed if isinstance(allowed, tuple) else (allowed,)
        pole = interval.contains(0) and not any(piece.contains(0) for piece in pieces)
        phrase = facts.pole_message if pole else None
        if phrase is None:
            domain = " or ".join(map(str, pieces))
            phrase = "{op}() needs its argument `{x}` in {domain}, but it lies in {interval}"
        else:
            domain = ""
        message = self.fill(phrase, node, arg, name=name, domain=domain, interval=interval)
        self.report("W300", message, node, fix=self.fix(facts.fix, node, arg))

    def fill(self, template: str, node: Node, arg: int, **values: object) -> str:
        """A message or fix template: `{op}()` is the op as `wording` names it, `{x}` the
        offending argument's text, `{0}`, `{1}` the arguments' texts, other names as given."""
        called, _ = self.wording(node)
        known = {str(i): self.text(a) for i, a in enumerate(node.args)}
        op = node.origin.op if node.origin is not None and node.origin.op else node.op
        known.update(x=self.text(arg), op=op, called=called)
        known.update({k: str(v) for k, v in values.items()})
        template = template.replace("{op}()", "{called}")
        return re.sub(r"\{(\w+)\}", lambda m: known.get(m.group(1), m.group(0)), template)

    def fix(self, template: str | None, node: Node, arg: int) -> str | None:
        """The fix a template gives, in the user's text: for an expression a rewrite
        replaced, the user's expression with the offending argument guarded as the template
        guards it (`log(1 + x)` -> `log(1 + clamp(x, min=-1 + 1e-6))`) where it can be."""
        if template is None:
            return None
        if node.origin is not None and node.origin.op is None:
            guarded = self.guarded_in_user_text(template, node, arg)
            if guarded is not None:
                return guarded
        return self.fill(template, node, arg)

    def guarded_in_user_text(self, template: str, node: Node, arg: int) -> str | None:
        assert node.origin is not None
        written = self.source(node.origin.span)
        at = self.place_in(node.origin.span, arg) if written is not None else None
        if written is None or at is None:
            return None
        for guard in GUARD.finditer(template):
            placeholder = guard.group(1)
            if placeholder == "x" or (placeholder.isdigit() and node.args[int(placeholder)] == arg):
                start, end = at
                return written[:start] + self.fill(guard.group(0), node, arg) + written[end:]
        return None

    def place_in(self, outer: Span, arg: int) -> tuple[int, int] | None:
        """Where the argument `arg` is written inside the user's expression at `outer`, as
        offsets into its text: by its span when it lies inside (an expression), else where
        its text occurs exactly once (a name: the node's span is its declaration)."""
        argument = self.ir.node(arg)
        if argument.origin is not None:  # made by a rewrite: not written by the user
            return None
        inner = argument.span
        if (inner.file, inner.line, inner.end_line) == (outer.file, outer.line, outer.line) and (
            outer.col <= inner.col and inner.end_col <= outer.end_col
        ):
            return inner.col - outer.col, inner.end_col - outer.col
        written, text = self.source(outer) or "", self.text(arg)
        found = [m.span() for m in re.finditer(rf"(?<![\w.]){re.escape(text)}(?![\w.(])", written)]
        return found[0] if len(found) == 1 else None

    def overflow(self, node: Node, intervals: list[iv.Interval], result: iv.Interval) -> None:
        _, facts = self.wording(node)
        message = facts.overflow_message or "{op}() can overflow float32: it reaches {result}"
        self.report(
            "W301",
            self.fill(message, node, node.args[0], result=result, interval=intervals[0]),
            node,
            fix=self.fix(facts.overflow_fix, node, node.args[0]),
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
