"""What a loss keeps across calls: `state` declarations, the anonymous states of `ema(x,
decay)`, and learned params (E201, E202, E204 for what is wrong with them).

    state beta = 0.1 in [1e-4, 10] update beta * (1 + clamp(kl / target - 1, -0.2, 0.2))
    param s = 0 learned
    term ce = ce_raw / max(ema(detach(ce_raw), 0.99), 1e-8)

A state is a leaf node (`state`) read as its value before the call; its update is an
expression built after every other value (it may read any of them, itself included) and
clamped into the state's range. `ema(x, d)` keeps two states, the running average
`m ← d·m + (1 − d)·x` and the number of training calls `n`, and is the node
`ema(detach(x), m', n + 1, m, n)` (the updates, built once, read by the states and by it)
whose value is the bias-corrected average (the backend reads the module's mode for it). A
learned param is a leaf node (`learned`): the backend reads its `nn.Parameter`, clamped
into its range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lossdsl.diagnostics import Span
from lossdsl.ir.declarations import show_number
from lossdsl.ir.graph import SCALAR_FLOAT, Failed, Scope
from lossdsl.ir.model import LearnedSpec, NamedValue, RangeSpec, StateSpec
from lossdsl.ir.trampoline import Walk
from lossdsl.ops import OPS
from lossdsl.syntax import ast

if TYPE_CHECKING:
    from lossdsl.ir.expressions import Expressions


@dataclass
class _Pending:
    """A declared state whose update is built once every value is."""

    decl: ast.StateDecl
    node: int
    init_node: int
    range: RangeSpec | None


class States:
    """The states, emas and learned params of one spec, as they are built."""

    def __init__(self, expressions: Expressions):
        self.expressions = expressions
        self.graph = expressions.graph
        self.symbols = expressions.symbols
        self.states: list[StateSpec] = []
        self.learned: list[LearnedSpec] = []
        self.emas: list[NamedValue] = []
        self.pending: list[_Pending] = []
        self.building: list[str] = []  # the declarations being built, innermost last
        self.emas_in: dict[str, int] = {}  # declaration -> how many emas it has so far
        self.clamps: dict[tuple[int, RangeSpec], int] = {}  # (node, range) -> clamped node

    # ---- state declarations ------------------------------------------------------------

    def declare_state(self, decl: ast.StateDecl) -> int:
        """The state's leaf; its start is checked now, its update built later."""
        init_node = self.expressions.expr(decl.value, Scope(params_only=True))
        if self.graph.type_of(init_node).dims != ():
            self.graph.error(
                "E201", f"the start of state `{decl.name}` must be a scalar", decl.value.span
            )
            raise Failed
        self.graph.check_finite(init_node, f"the start of state `{decl.name}`")
        rng = self.numeric_range(decl.range, f"state `{decl.name}`")
        start = self.graph.fold(init_node)
        if rng is not None and start is not None and not rng.contains(start):
            self.graph.error(
                "E204",
                f"state `{decl.name}` starts at {show_number(start)}, outside its range {rng}",
                decl.value.span,
                fix=f"start it in {rng}",
            )
        init_node = self.clamped(init_node, rng, decl.value.span)  # a param's value may leave it
        node = self.graph.add(
            "state", (), {"name": decl.name}, SCALAR_FLOAT, decl.name_span, name=decl.name
        )
        self.pending.append(_Pending(decl, node, init_node, rng))
        return node

    def build_updates(self) -> None:
        """Every declared state's update: a scalar read from this call's values, clamped
        into the state's range."""
        for state in self.pending:
            decl = state.decl
            self.building.append(decl.name)
            try:
                update = self.expressions.expr(decl.update, Scope())
            except Failed:
                continue
            finally:
                self.building.pop()
            update_type = self.graph.type_of(update)
            if update_type.dims != ():
                self.graph.error(
                    "E202",
                    f"the update of state `{decl.name}` is {update_type}, not a scalar",
                    decl.update.span,
                    fix="reduce it, e.g. `mean(…)`",
                )
                continue
            update = self.clamped(update, state.range, decl.update.span)
            self.states.append(
                StateSpec(
                    name=decl.name,
                    node=state.node,
                    init_node=state.init_node,
                    update=update,
                    range=state.range,
                    span=decl.span,
                )
            )

    def clamped(self, node: int, rng: RangeSpec | None, span: Span) -> int:
        """`clamp(node, lo, hi)` with the range's finite ends (none: the node itself)."""
        if rng is None:
            return node
        if (node, rng) in self.clamps:  # a start and an update alike (`update kl_coef`)
            return self.clamps[node, rng]
        self.clamps[node, rng] = self.clamp_into(node, rng, span)
        return self.clamps[node, rng]

    def clamp_into(self, node: int, rng: RangeSpec, span: Span) -> int:
        bounds = {"min": rng.lo, "max": rng.hi}
        present = {k: float(v) for k, v in bounds.items() if math.isfinite(float(v))}
        if not present:
            return node
        args = [node] + [self.graph.constant(v, span) for v in present.values()]
        attrs = {"present": ("x", *present)}
        return self.expressions.apply(OPS["clamp"], args, attrs, span, Scope())

    def numeric_range(self, rng: ast.Range | None, what: str) -> RangeSpec | None:
        """A state's or a learned param's range: numbers only (a dim has no value here)."""
        spec = self.symbols.range_spec(rng)
        if spec is None or rng is None:
            return spec
        if isinstance(spec.lo, str) or isinstance(spec.hi, str):
            self.graph.error("E204", f"the range of {what} takes numbers, not dims", rng.span)
            return None
        return spec

    # ---- learned params -------------------------------------------------------------------

    def declare_learned(self, decl: ast.ParamDecl) -> int:
        assert decl.value is not None
        init_node = self.expressions.expr(decl.value, Scope(params_only=True))
        init = self.graph.fold(init_node)
        if init is None or self.graph.type_of(init_node).dims != ():
            self.graph.error(
                "E201",
                f"learned param `{decl.name}` starts at a number (its `nn.Parameter`'s "
                "value when the module is built)",
                decl.value.span,
                fix=f"param {decl.name} = 0 learned",
            )
            raise Failed
        self.graph.check_finite(init_node, f"the start of learned param `{decl.name}`")
        rng = self.numeric_range(decl.range, f"learned param `{decl.name}`")
        if rng is not None and not rng.contains(init):
            self.graph.error(
                "E204",
                f"learned param `{decl.name}` = {show_number(init)} is outside its range {rng}",
                decl.value.span,
                fix=f"choose a value in {rng}",
            )
        node = self.graph.add(
            "learned", (), {"name": decl.name}, SCALAR_FLOAT, decl.name_span, name=decl.name
        )
        self.learned.append(
            LearnedSpec(name=decl.name, node=node, init=init, range=rng, span=decl.span)
        )
        return node

    # ---- ema ------------------------------------------------------------------------------

    def ema(self, e: ast.Call, scope: Scope) -> Walk[int]:
        """`ema(x, decay)`: two states (the average, the count of calls) and the node of
        the bias-corrected average."""
        op = OPS["ema"]
        calls = self.expressions.calls
        if scope.params_only:
            self.graph.error(
                scope.misuse_code,
                "ema() averages values of the batch; a param's value, a state's start or a "
                "weight may only use numbers, params and step",
                e.span,
                scope=scope,
            )
            raise Failed
        bound = calls.bind_arguments(op, e, scope)
        decay = calls.static_argument(op, "number", "decay", bound["decay"], None, e, scope)
        if not 0 <= decay < 1:
            self.graph.error(
                "E204",
                f"ema() takes a decay in [0, 1), got {show_number(decay)}",
                bound["decay"].span,
                fix="a decay such as 0.99 (about the last 100 calls)",
                scope=scope,
            )
            raise Failed
        x = yield self.expressions.sub(bound["x"], scope)
        x_type = self.graph.type_of(x)
        if x_type.dims != ():
            self.graph.error(
                "E202",
                f"ema() averages a scalar, not {x_type}",
                bound["x"].span,
                fix="average a reduction of it, e.g. ema(mean(…), 0.99)",
                scope=scope,
            )
            raise Failed
        name = self.ema_name()
        span = e.span
        zero = self.graph.constant(0.0, span)  # both states start at 0, before their leaves
        average = self.hidden_state(name, span)
        calls_so_far = self.hidden_state(f"{name}.calls", span)
        kept = self.expressions.apply(OPS["detach"], [x], {}, span, Scope())
        new_average = self.weighted_sum(average, kept, decay, span)
        one = self.graph.constant(1.0, span)
        counted = self.expressions.apply(OPS["add"], [calls_so_far, one], {}, span, Scope())
        self.states.append(
            StateSpec(
                name=name,
                node=average,
                init_node=zero,
                update=new_average,
                span=span,
                reported=False,
            )
        )
        self.states.append(
            StateSpec(
                name=f"{name}.calls",
                node=calls_so_far,
                init_node=zero,
                update=counted,
                span=span,
                reported=False,
            )
        )
        value = self.graph.add(
            "ema",
            (kept, new_average, counted, average, calls_so_far),
            {"decay": decay},
            SCALAR_FLOAT,
            span,
            scope=scope,
        )
        self.emas.append(NamedValue(name=name, node=value, span=span))
        return value

    def ema_name(self) -> str:
        """`<declaration>.ema`, `<declaration>.ema2`, …: the same in every variant of the
        spec, so derived-input variants share the module's averages."""
        owner = self.building[-1] if self.building else "objective"
        count = self.emas_in.get(owner, 0) + 1
        self.emas_in[owner] = count
        return f"{owner}.ema" if count == 1 else f"{owner}.ema{count}"

    def hidden_state(self, name: str, span: Span) -> int:
        return self.graph.add("state", (), {"name": name}, SCALAR_FLOAT, span)

    def weighted_sum(self, average: int, x: int, decay: float, span: Span) -> int:
        """decay·average + (1 − decay)·x."""
        apply, scope = self.expressions.apply, Scope()
        old = apply(OPS["mul"], [self.graph.constant(decay, span), average], {}, span, scope)
        new = apply(OPS["mul"], [self.graph.constant(1 - decay, span), x], {}, span, scope)
        return apply(OPS["add"], [old, new], {}, span, scope)
