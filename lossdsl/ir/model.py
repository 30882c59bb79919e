"""The IR of a spec: pydantic models, expressions as a flat SSA table of typed nodes."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lossdsl.diagnostics import Span
from lossdsl.ir.types import Dim, TensorType


def _tuples(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")


class RangeSpec(_Frozen):
    """A declared range; bounds are numbers (±inf allowed) or dim names (`[0, V)`)."""

    lo: float | str = -math.inf
    hi: float | str = math.inf
    lo_closed: bool = False
    hi_closed: bool = False

    def __str__(self) -> str:
        def show(v: float | str) -> str:
            if isinstance(v, str):
                return v
            if math.isinf(v):
                return "inf" if v > 0 else "-inf"
            return str(int(v)) if float(v).is_integer() else repr(v)

        return (
            f"{'[' if self.lo_closed else '('}{show(self.lo)}, "
            f"{show(self.hi)}{']' if self.hi_closed else ')'}"
        )

    def contains(self, value: float) -> bool:
        lo = self.lo if isinstance(self.lo, float | int) else -math.inf
        hi = self.hi if isinstance(self.hi, float | int) else math.inf
        if math.isnan(value):
            return False
        above = value >= lo if self.lo_closed else value > lo
        below = value <= hi if self.hi_closed else value < hi
        return above and below

    def is_empty(self) -> bool:
        if isinstance(self.lo, str) or isinstance(self.hi, str):
            return False
        if self.lo > self.hi:
            return True
        return self.lo == self.hi and not (self.lo_closed and self.hi_closed)


class Origin(_Frozen):
    """What the user wrote where a stability rewrite put a node, so that diagnostics about
    the node speak of the user's text: the expression it computes (`span`) and, when the
    node's hazards are exactly those of one op the user called there, that op (`expm1(x)`
    made from `exp(x) - 1` overflows where the user's `exp(x)` does: op `exp`, its span)."""

    span: Span
    op: str | None = None


class Node(_Frozen):
    """One SSA value: `op` applied to the nodes `args`, with static `attrs`."""

    id: int
    op: str
    args: tuple[int, ...] = ()
    attrs: dict[str, Any] = Field(default_factory=dict)
    type: TensorType
    span: Span
    name: str | None = None  # the spec's name for this value (input, param, let, term, …)
    via: tuple[str, ...] = ()  # def calls this node was inlined through, innermost last
    origin: Origin | None = None  # set when a stability rewrite made the node

    @field_validator("attrs", mode="after")
    @classmethod
    def _lists_as_tuples(cls, attrs: dict[str, Any]) -> dict[str, Any]:
        """Attributes hold tuples (`present`, `dim=[B, T]`, piecewise values); JSON gives
        them back as lists, so an IR read from the cache equals the one that was built."""
        return {key: _tuples(value) for key, value in attrs.items()}


class InputSpec(_Frozen):
    name: str
    dtype: str  # as declared: float f64 f32 bf16 f16 int bool
    dims: tuple[Dim, ...]
    grad: bool
    range: RangeSpec | None = None
    default: float | None = None
    node: int
    span: Span


class ParamSpec(_Frozen):
    name: str
    node: int  # the `param` leaf the graph reads
    default: float | None  # a plain number, or None when the default is an expression
    default_node: int  # the default as an expression of numbers, params and `step`
    range: RangeSpec | None = None
    span: Span


class StateSpec(_Frozen):
    """A scalar the module keeps across calls: a `state` declaration, or one of the two an
    `ema(x, decay)` keeps (its running average and its count of calls, named after the
    declaration it is in: `ce.ema`, `ce.ema.calls`; a second one in it is `ce.ema2`)."""

    name: str
    node: int  # the `state` leaf: its value before this call's update
    init_node: int  # INIT, of numbers, params and `step`, read when the state (re)starts
    update: int  # its value after a training-mode call, clamped into `range` when given
    range: RangeSpec | None = None
    span: Span
    reported: bool = True  # in `LossOutput.states` (a user's state; an ema's are not)


class LearnedSpec(_Frozen):
    """`param NAME = INIT learned [in RANGE]`: a trainable scalar (an `nn.Parameter`)."""

    name: str
    node: int  # the `learned` leaf: the parameter as read, clamped into `range` when given
    init: float
    range: RangeSpec | None = None
    span: Span


class ChoiceSpec(_Frozen):
    name: str
    value: str
    choices: tuple[str, ...]
    span: Span


class NamedValue(_Frozen):
    name: str
    node: int
    span: Span


class Derivations(_Frozen):
    """Derived inputs (`input logits : … = matmul(hidden, head, dim=H)`): what each one's
    expression reads, what the rest of the spec reads, and every declared input. Enough to
    pick a call's variant from the names it passes, with no parser at run time."""

    reads: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    outside: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    fallback: dict[str, float] = Field(default_factory=dict)  # `= EXPR else NUMBER`
    unchosen: tuple[str, ...] = ()  # read only by branches the static choices leave out

    def computed_for(self, given: Iterable[str]) -> frozenset[str]:
        """The derived inputs a call passing `given` computes: those it does not pass that a
        kept declaration, or another computed derivation, reads; except one with a fallback
        number whose expression needs an input the call does not pass (it is that number)."""
        given = set(given)
        candidates = {name for name in self.reads if name not in given}
        computed: set[str] = set()
        pending = [name for name in candidates if name in self.outside]
        while pending:
            name = pending.pop()
            if name in computed or not self._wanted(name, given):
                continue
            computed.add(name)
            pending += [n for n in self.reads[name] if n in candidates]
        return frozenset(computed)

    def _wanted(self, name: str, given: set[str]) -> bool:
        return name not in self.fallback or self._derivable(name, given, set())

    def _derivable(self, name: str, given: set[str], seen: set[str]) -> bool:
        """Whether every input the derivation of `name` needs is passed or derivable."""
        seen.add(name)
        for read in self.reads[name]:
            if read not in self.inputs or read in given:
                continue
            if read not in self.reads or read in seen or not self._derivable(read, given, seen):
                return False
        return True

    def kept_inputs(self, computed: frozenset[str]) -> set[str]:
        """The inputs of the variant computing `computed`: every input but the computed ones,
        those only derivations read (unless a computed derivation reads them), derived inputs
        nothing reads, and inputs only branches the static choices leave out read."""
        only_derivations = {n for names in self.reads.values() for n in names} - set(self.outside)
        unread = {n for n in self.reads if n not in self.outside} - only_derivations
        unread |= set(self.unchosen) - only_derivations
        kept = {
            n
            for n in self.inputs
            if n not in computed and n not in only_derivations and n not in unread
        }
        for name in computed:
            kept |= {n for n in self.reads[name] if n not in computed and n in self.inputs}
        return kept

    def alternatives(self, missing: Iterable[str]) -> list[str]:
        """Derived inputs whose derivation reads a missing input, directly or through other
        derived inputs: passing one of them instead would do."""
        lacking = set(missing)
        found: set[str] = set()
        grew = True
        while grew:
            more = {n for n, names in self.reads.items() if (lacking | found) & set(names)}
            grew = not more <= found
            found |= more
        return sorted(found)


class SpecIR(_Frozen):
    name: str
    doc: str | None = None
    file: str
    nodes: tuple[Node, ...]
    inputs: tuple[InputSpec, ...]
    params: tuple[ParamSpec, ...]
    choices: tuple[ChoiceSpec, ...] = ()
    lets: tuple[NamedValue, ...] = ()
    terms: tuple[NamedValue, ...] = ()
    metrics: tuple[NamedValue, ...] = ()
    weights: dict[str, int]  # term name -> weight node (a scalar of numbers, params, step)
    objective_span: Span | None = None
    dims: tuple[str, ...] = ()  # named dims in order of first appearance
    step_node: int
    sources: dict[str, str] = Field(default_factory=dict)  # file -> text, for fixes
    properties: dict[str, dict[str, str]] = Field(default_factory=dict)  # per term
    warnings: tuple[str, ...] = ()  # the check's warnings, rendered, for `lossdsl.load`
    derivations: Derivations = Field(default_factory=Derivations)
    computed: tuple[str, ...] = ()  # the derived inputs this variant computes
    states: tuple[StateSpec, ...] = ()
    learned: tuple[LearnedSpec, ...] = ()
    emas: tuple[NamedValue, ...] = ()  # each `ema(…)`'s value, by its average's state name

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def input(self, name: str) -> InputSpec:
        return next(i for i in self.inputs if i.name == name)
