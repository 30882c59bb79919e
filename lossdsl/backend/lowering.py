"""Checked IR to a `torch.fx.GraphModule`: one fx node per IR node, named after the spec.

The graph's signature is `forward(<inputs…>, step, params, <learned…>, states, training)`:
`step` is a 0-d tensor in the compute dtype (the graph reads the compute dtype off it),
`params` a float64 vector of the declared params in order, NaN where a param keeps its
declared default expression (left out when there are none); then, for a spec that adapts,
each learned param's `nn.Parameter`, the vector of the states' values (NaN: a state that
starts at its INIT on this call) and the module's mode (a 0-d bool tensor, true in training).
It returns `(loss, *terms, *weights, *metrics)`, then each reported value (the states
declared, the learned params, each `ema`'s average) and the states' new values as one
vector (their old ones in eval mode): the caller keeps that vector for the next call.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from functools import cached_property
from typing import Any

import torch
import torch.fx as fx

from lossdsl.ir import LearnedSpec, Node, ParamSpec, SpecIR, StateSpec
from lossdsl.ops import OPS, scalar
from lossdsl.ops.op import MASK

Value = Any  # an fx.Proxy, or a Python number for constants


class _NotLoweredYet(Exception):
    """A node read an operand that is not lowered yet: lower that one first."""

    def __init__(self, node_id: int, metric: bool):
        super().__init__(node_id)
        self.node_id = node_id
        self.metric = metric


class _Lowering:
    def __init__(
        self,
        ir: SpecIR,
        compiled: bool = False,
        collectives: Any = None,
        stepped: bool = False,
    ):
        from lossdsl.backend.collectives import global_sums, resolve

        self.ir = ir
        self.compiled = compiled  # the graph goes to torch.compile (patterns may differ)
        # The data-parallel group `global_sum` sums over (backend/collectives.py); `stepped`:
        # the totals of `begin_step` are given, one placeholder per `global_sum`.
        self.collectives = resolve() if collectives is None else collectives
        self.totals = global_sums(ir) if stepped else ()
        self.graph = fx.Graph()
        self.tracer = fx.proxy.GraphAppendingTracer(self.graph)
        self.values: dict[int, Value] = {}
        self.detached: dict[int, Value] = {}
        self.input_proxies: dict[str, fx.Proxy] = {}
        self.shared: dict[Any, Value] = {}
        self.param_given: dict[int, Value] = {}  # param node -> the value the caller set
        self.learned_given: dict[str, fx.Proxy] = {}  # learned param -> its nn.Parameter
        self.state_index = {s.node: i for i, s in enumerate(ir.states)}
        self._input_free: dict[int, bool] | None = None

    # ---- plumbing -------------------------------------------------------------------

    def placeholder(self, name: str) -> fx.Proxy:
        return fx.Proxy(self.graph.placeholder(name), self.tracer)

    def name(self, value: Value, name: str | None) -> Value:
        if name and isinstance(value, fx.Proxy) and value.node.op != "placeholder":
            if value.node.name != name:
                value.node._rename(name)
        return value

    def tensor(self, value: Value) -> fx.Proxy:
        """A Python constant as a 0-d tensor in the compute dtype, on the inputs' device."""
        if isinstance(value, fx.Proxy):
            return value
        number = float(value)
        return self.once(("constant", number), lambda: torch.full_like(self.step, number))

    def device(self) -> Value:
        """The inputs' device, read once per graph."""
        return self.once("device", lambda: self.step.device)

    def positions(self, size: Value) -> Value:
        """0 … size - 1 on the inputs' device, made once per size (a new dim shares its
        source's)."""
        key = ("positions", size.node if isinstance(size, fx.Proxy) else size)
        return self.once(key, lambda: torch.arange(size, device=self.device()))

    def as_long(self, index: Value) -> Value:
        """Integer indices as int64 (what torch indexes with), converted once per value."""
        if not isinstance(index, fx.Proxy):
            return index
        return self.once(("long", index.node), lambda: index.long())

    def floating(self, value: Value, kind: str) -> Value:
        """Bool and int tensors enter float ops in the compute dtype."""
        if isinstance(value, fx.Proxy) and kind != "float":
            return self.once(("float", value.node), lambda: value.to(self.dtype))
        return value

    def once(self, key: Any, make: Callable[[], Value]) -> Value:
        """The value `make()` gives, made the first time `key` is asked for and shared after."""
        if key not in self.shared:
            self.shared[key] = make()
        return self.shared[key]

    def dim_size(self, x: fx.Proxy, axis: int) -> Value:
        return self.once(("size", x.node, axis), lambda: x.size(axis))

    # ---- the graph ------------------------------------------------------------------

    def run(self) -> fx.GraphModule:
        self.bind_spec_inputs()
        return self.finish(self.outputs())

    def bind_spec_inputs(self, given: tuple[int, ...] = ()) -> None:
        """Placeholders for the inputs, `step` and `params` (the graph's signature), the
        totals of `begin_step` in a stepped graph, then the `given` nodes, whose values the
        caller computes (slicing, backend/slicing.py)."""
        ir = self.ir
        for spec in ir.inputs:
            self.input_proxies[spec.name] = self.placeholder(spec.name)
        self.step = self.placeholder("step")
        params = self.placeholder("params") if ir.params else None
        self.dtype = self.name(self.step.dtype, "dtype")
        for spec in ir.inputs:
            self.bind_input(spec.name, spec.node)
        self.values[ir.step_node] = self.step
        if params is not None:
            params = self.name(params.to(self.dtype), "params_")
            for index, spec in enumerate(ir.params):
                given_value = self.name(params[index], f"{spec.name}_given")
                self.param_given[spec.node] = given_value
        self.bind_adaptive()
        for node_id in (*self.totals, *given):
            self.values[node_id] = self.placeholder(self.value_name(node_id))

    def bind_adaptive(self) -> None:
        """Placeholders for the learned params, the states' vector and the module's mode."""
        for spec in self.ir.learned:
            self.learned_given[spec.name] = self.placeholder(spec.name)
        if self.ir.states:
            self.states = self.placeholder("states")
            self.training = self.placeholder("training")

    def bind_input(self, name: str, node_id: int) -> None:
        proxy = self.input_proxies[name]
        node = self.ir.node(node_id)
        if node.type.dims and node.type.kind == "float":
            proxy = self.name(proxy.to(self.dtype), f"{name}_")
        self.values[node_id] = proxy

    def value_name(self, node_id: int) -> str:
        node = self.ir.node(node_id)
        return node.name or f"{node.op}_{node_id}"

    def finish(self, outputs: list[Value]) -> fx.GraphModule:
        self.graph.output(tuple(v.node if isinstance(v, fx.Proxy) else v for v in outputs))
        self.graph.eliminate_dead_code()  # e.g. the float32 copy of an input only matmul reads
        self.graph.lint()
        return fx.GraphModule(torch.nn.Module(), self.graph, class_name=_class_name(self.ir.name))

    def outputs(self) -> list[Value]:
        ir = self.ir
        terms = [
            self.tensor(self.floating(self.lower(t.node), self.kind(t.node))) for t in ir.terms
        ]
        raw_weights = [self.lower(ir.weights[t.name]) for t in ir.terms]
        loss: Value = None
        for term, weight in zip(terms, raw_weights, strict=True):
            if isinstance(weight, float | int) and weight == 0:
                continue
            if isinstance(weight, float | int) and weight == 1:
                weighted = term
            else:
                weighted = off_at_zero(self, weight, weight * term)
            loss = weighted if loss is None else loss + weighted
        loss = self.tensor(0.0 if loss is None else loss)
        if not any(loss is term for term in terms):
            loss = self.name(loss, "loss")
        weights = [self.weight(t.name, w) for t, w in zip(ir.terms, raw_weights, strict=True)]
        metrics = [self.tensor(self.lower_metric(m.node)) for m in ir.metrics]
        return [loss, *terms, *weights, *metrics, *self.adaptive_outputs()]

    def adaptive_outputs(self) -> list[Value]:
        """The reported values (states declared, learned params, emas), then the states'
        new values: each update, computed without gradient, in training mode; the stored
        value (NaN for a state not started yet) in eval mode."""
        ir = self.ir
        if not ir.states and not ir.learned:
            return []
        updates = [self.tensor(self.lower_metric(s.update)) for s in ir.states]
        reported: list[Value] = []
        for state, update in zip(ir.states, updates, strict=True):
            if state.reported:
                now = self.tensor(self.lower_metric(state.node))
                reported.append(self.name(torch.where(self.training, update, now), state.name))
        reported += [self.tensor(self.lower_metric(p.node)) for p in ir.learned]
        reported += [self.tensor(self.lower_metric(e.node)) for e in ir.emas]
        if not ir.states:
            return reported
        kept = self.states.dtype  # one read of the buffer's dtype for every update
        new = torch.stack([u.to(kept) for u in updates])
        return [*reported, self.name(torch.where(self.training, new, self.states), "new_states")]

    def weight(self, term: str, value: Value) -> Value:
        """The weight as an output tensor, named `<term>_weight` unless the spec named it."""
        if not isinstance(value, fx.Proxy):
            return self.name(self.tensor(value), f"{term}_weight")
        if self.ir.node(self.ir.weights[term]).name is None:
            return self.name(value, f"{term}_weight")
        return value

    def kind(self, node_id: int) -> str:
        return self.ir.node(node_id).type.kind

    def lower(self, node_id: int) -> Value:
        return self.lower_in_order(node_id, metric=False)

    def lower_metric(self, node_id: int) -> Value:
        """Metrics read what the terms computed through `detach`, so they record no gradient."""
        return self.lower_in_order(node_id, metric=True)

    def lower_in_order(self, root: int, metric: bool) -> Value:
        """Lower a node after the operands it reads, with a stack of its own rather than
        recursion (a chain of 10,000 lets is 10,000 deep). A node is tried first; when it
        reads an operand not lowered yet, what it emitted is taken back, and it is tried
        again after that operand. Patterns still decide which operands are lowered at all."""
        pending = [(root, metric)]
        while pending:
            node_id, as_metric = pending[-1]
            if self.lowered(node_id, as_metric) is not None:
                pending.pop()
                continue
            mark = self.last_graph_node()
            try:
                value = self.lower_node(node_id, as_metric)
            except _NotLoweredYet as missing:
                self.erase_after(mark)
                pending.append((missing.node_id, missing.metric))
                continue
            (self.detached if as_metric else self.values)[node_id] = value
            pending.pop()
        return self.lowered(root, metric)

    def lowered(self, node_id: int, metric: bool) -> Value | None:
        """The node's value if it is lowered already (for a metric: through `detach`)."""
        if node_id in self.values:
            return self.detach(node_id) if metric else self.values[node_id]
        return self.detached.get(node_id) if metric else None

    def lower_node(self, node_id: int, metric: bool) -> Value:
        """One node, from operands lowered before; raises _NotLoweredYet for one that is not."""

        def operand(arg: int) -> Value:
            # A plain look-up: a metric's `detach` of an operand is emitted by the loop, so
            # that an attempt taken back never leaves one cached.
            value = (self.detached if metric else self.values).get(arg)
            if value is None:
                raise _NotLoweredYet(arg, metric)
            return value

        node = self.ir.node(node_id)
        if node.op == "param":  # a default expression: lowered (without detach) first
            spec = self.param_specs[node_id]
            if spec.default is None and spec.default_node not in self.values:
                raise _NotLoweredYet(spec.default_node, False)
        if node.op == "state":  # its start (no gradient: numbers, params, step), as lowered
            start = self.state_specs[node_id].init_node
            if start not in self.values and start not in self.detached:
                raise _NotLoweredYet(start, True)
        value = self.pattern(node, operand)
        if value is None:
            value = self.emit(node, [operand(a) for a in node.args])
        return self.name(value, node.name)

    @cached_property
    def param_specs(self) -> dict[int, ParamSpec]:
        return {p.node: p for p in self.ir.params}

    @cached_property
    def state_specs(self) -> dict[int, StateSpec]:
        return {s.node: s for s in self.ir.states}

    @cached_property
    def learned_specs(self) -> dict[int, LearnedSpec]:
        return {p.node: p for p in self.ir.learned}

    def last_graph_node(self) -> fx.Node:
        return next(iter(reversed(self.graph.nodes)))

    def erase_after(self, mark: fx.Node) -> None:
        """Take back the fx nodes emitted after `mark` (by an attempt that had to wait)."""
        while (last := self.last_graph_node()) is not mark:
            self.graph.erase_node(last)

    def pattern(self, node: Node, sub: Callable[[int], Value]) -> Value | None:
        """A fused form of `node` from backend/patterns.py, lowering operands through `sub`."""
        for match in PATTERNS.get(node.op, ()):
            value = match(self, node, sub)
            if value is not None:
                return value
        return None

    def detach(self, node_id: int) -> Value:
        if node_id not in self.detached:
            value = self.values[node_id]
            needs = isinstance(value, fx.Proxy) and self.carries_gradient(node_id)
            self.detached[node_id] = self.detached_value(value) if needs else value
        return self.detached[node_id]

    def detached_value(self, value: fx.Proxy) -> fx.Proxy:
        """One `detach` per value, for metrics and the spec's own `detach(x)` alike."""
        return self.once(("detach", value.node), value.detach)

    def carries_gradient(self, node_id: int) -> bool:
        grads = {spec.node for spec in self.ir.inputs if spec.grad}
        grads |= {spec.node for spec in self.ir.learned}
        stack, seen = [node_id], set()
        while stack:
            current = stack.pop()
            if current in grads:
                return True
            if current not in seen:
                seen.add(current)
                stack.extend(self.ir.node(current).args)
        return False

    # ---- one node ---------------------------------------------------------------------

    def emit(self, node: Node, args: list[Value]) -> Value:
        if node.op == "const":
            value = node.attrs["value"]
            if node.type.kind == "int" and not math.isinf(value):
                return int(value)
            return bool(value) if node.type.kind == "bool" else float(value)
        if node.op == "alias":
            return args[0]
        if node.op == "param":
            return self.param(node)
        if node.op == "state":
            return self.state(node)
        if node.op == "learned":
            return self.learned(node)
        if node.op in ("input", "step"):
            raise AssertionError("inputs and step are bound before lowering")
        op = OPS[node.op]
        if node.type.kind == "float" and op.group in ("elementwise", "schedule"):
            kinds = [a.kind for a in self.present(op, node)]
            args = [
                a if k == MASK else self.floating(a, self.kind(i))
                for a, i, k in zip(args, node.args, kinds, strict=True)
            ]
        lowering = LOWERINGS.get(op.lowering)
        if lowering is not None:
            return lowering(self, node, args)
        return _resolve(op.lowering)(*args)

    def present(self, op: Any, node: Node) -> list[Any]:
        """The op's tensor arguments that this node was given, in order."""
        given = node.attrs.get("present")
        return [a for a in op.tensor_args() if given is None or a.name in given]

    def param(self, node: Node) -> Value:
        spec = next(p for p in self.ir.params if p.node == node.id)
        given = self.param_given[node.id]
        if spec.default is not None:
            return given
        # NaN means "not set": the declared default expression (a schedule) applies.
        default = self.tensor(self.lower(spec.default_node))
        return torch.where(torch.isnan(given), default, given)

    def state(self, node: Node) -> Value:
        """The state's value before this call: its start while it has none (NaN)."""
        stored = self.states[self.state_index[node.id]].to(self.dtype)
        init = self.state_specs[node.id].init_node
        start = self.values[init] if init in self.values else self.detached[init]
        if not isinstance(start, fx.Proxy):
            start = float(start)  # a number: `where` takes it as it is, no tensor made
        return torch.where(torch.isnan(stored), start, stored)

    def learned(self, node: Node) -> Value:
        """The learned param's `nn.Parameter` in the compute dtype, clamped into its range."""
        spec = self.learned_specs[node.id]
        value = self.learned_given[spec.name].to(self.dtype)
        if spec.range is None:
            return value
        bounds = {"min": float(spec.range.lo), "max": float(spec.range.hi)}
        finite = {k: v for k, v in bounds.items() if math.isfinite(v)}
        return torch.clamp(value, **finite) if finite else value

    def log_softmax(self, x: Value, axis: int) -> Value:
        """One log_softmax per logits and axis, shared by `log_softmax` and `entropy`.

        Compiled, it is `x - logsumexp(x)` with the logsumexp shared (`logsumexp`): Inductor
        computes it in the same passes, and a mean of log-probabilities reads it without a
        pass of its own (backend/patterns.py)."""
        key = (x.node if isinstance(x, fx.Proxy) else x, axis)
        if key not in self.shared:
            x = self.tensor(x)
            if self.compiled:
                self.shared[key] = x - self.logsumexp(x, axis).unsqueeze(axis)
            else:
                self.shared[key] = torch.log_softmax(x, dim=axis)
        return self.shared[key]

    def logsumexp(self, x: fx.Proxy, axis: int) -> fx.Proxy:
        """One logsumexp per tensor and axis."""
        return self.once(("logsumexp", x.node, axis), lambda: torch.logsumexp(x, dim=axis))

    def check_indices(self, index: Value, index_id: int, size: Value, dim: str) -> None:
        """Assert, on the device, that the class indices `index` lie in [0, size): out of
        range, torch's gather is a raw IndexError on a CPU and a device-side assert on a GPU,
        neither naming the input. The runtime turns the message into an InputError."""
        sources = [spec for spec in self.ir.inputs if spec.node in self.reachable(index_id)]
        if not isinstance(index, fx.Proxy) or not sources:
            return  # indices the graph makes itself (`index(D)`) are in range

        def check() -> None:
            in_range = ((index >= 0) & (index < size)).all()
            torch._assert_async(in_range, index_message(sources, index_id, dim))

        self.once(("indices checked", index_id, dim), check)  # one dim: one size

    def is_coefficient(self, node_id: int) -> bool:
        """A value of numbers, params and `step` only: the same for every element."""
        if self._input_free is None:
            inputs = {spec.node for spec in self.ir.inputs}
            free: dict[int, bool] = {}
            for node in self.ir.nodes:  # the table is in SSA order: arguments come first
                free[node.id] = node.id not in inputs and all(free[a] for a in node.args)
            self._input_free = free
        return self._input_free[node_id]

    def reachable(self, node_id: int) -> set[int]:
        """The nodes a value is computed from, itself included."""
        stack, seen = [node_id], set()
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.ir.node(current).args)
        return seen

    # ---- dims -----------------------------------------------------------------------

    def axis(self, dims: tuple, dim: str) -> int:
        """Dims are last and `...` leads, so a negative axis names a dim at every rank."""
        return dims.index(dim) - len(dims)

    def dims_of(self, node: Node, arg_index: int = 0) -> tuple:
        return self.ir.node(node.args[arg_index]).type.dims

    def size_of(self, dim: str) -> Value:
        """The size of a dim, read once per graph (a new dim and its source share it)."""
        for node in self.ir.nodes:  # a new dim of `rename(x, dim=N, to=K)`: K is N's size
            if node.op == "rename" and node.attrs["to"] == dim:
                return self.size_of(node.attrs["dim"])
        key = ("size", dim)
        if key not in self.shared:
            self.shared[key] = self._size_from_inputs(dim)
        return self.shared[key]

    def _size_from_inputs(self, dim: str) -> Value:
        for spec in self.ir.inputs:
            if dim in spec.dims:
                return self.input_proxies[spec.name].size(self.axis(spec.dims, dim))
        raise AssertionError(f"dim {dim} has no input")


def _resolve(dotted: str) -> Callable[..., Any]:
    module_name, _, attr = dotted.rpartition(".")
    module: Any = {"operator": operator, "torch": torch}.get(module_name)
    if module is None:
        module = torch
        for part in module_name.split(".")[1:]:
            module = getattr(module, part)
    return getattr(module, attr)


def index_message(sources: list[Any], index_id: int, dim: str) -> str:
    """`input `actions` (declared in [0, V)) has a class index outside [0, V)`, or `input
    `target` leads to …` when the index is computed from the input (`where(valid, t, 0)`)."""
    names = ", ".join(f"`{spec.name}`" for spec in sources)
    who = f"input {names}" if len(sources) == 1 else f"inputs {names}"
    if len(sources) == 1 and sources[0].range is not None:
        who += f" (declared in {sources[0].range})"
    if len(sources) == 1 and sources[0].node == index_id:
        verb = "has"
    else:
        verb = "leads to" if len(sources) == 1 else "lead to"
    return f"{who} {verb} a class index outside [0, {dim})"


def _class_name(spec_name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in spec_name.split("_") if part) or "Loss"


# ---- lowerings of composite ops ------------------------------------------------------

Lowering = Callable[[_Lowering, Node, list[Value]], Value]
LOWERINGS: dict[str, Lowering] = {}
# IR op -> pattern lowerings tried before the op's own (backend/patterns.py registers them)
PATTERNS: dict[str, list[Callable[[_Lowering, Node, Callable[[int], Value]], Value | None]]] = {}


def lowering(name: str) -> Callable[[Lowering], Lowering]:
    def register(fn: Lowering) -> Lowering:
        LOWERINGS[name] = fn
        return fn

    return register


@lowering("log1mexp")
def _log1mexp(low: _Lowering, node: Node, args: list[Value]) -> Value:
    (x,) = args
    # Mächler (2012): log(-expm1(x)) near 0, log1p(-exp(x)) further out.
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


@lowering("softplus")
def _softplus(low: _Lowering, node: Node, args: list[Value]) -> Value:
    (x,) = args
    x = low.tensor(x)
    return torch.logaddexp(x, torch.zeros_like(x))  # exact, no linear threshold


@lowering("clamp")
def _clamp(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x, *bounds = args
    named = dict(zip([n for n in node.attrs["present"] if n != "x"], bounds, strict=True))
    if any(isinstance(b, fx.Proxy) for b in named.values()):
        named = {k: low.tensor(v) for k, v in named.items()}
    return torch.clamp(low.tensor(x), **named)


def _elementwise_extreme(fn: Callable[..., Any], bound: str) -> Lowering:
    def lower(low: _Lowering, node: Node, args: list[Value]) -> Value:
        a, b = args
        if not isinstance(b, fx.Proxy):
            return torch.clamp(low.tensor(a), **{bound: b})
        if not isinstance(a, fx.Proxy):
            return torch.clamp(b, **{bound: a})
        return fn(a, b)

    return lower


LOWERINGS["torch.minimum"] = _elementwise_extreme(torch.minimum, "max")
LOWERINGS["torch.maximum"] = _elementwise_extreme(torch.maximum, "min")


def off_at_zero(low: _Lowering, coefficient: Value, product: Value) -> Value:
    """`product` where `coefficient` is not 0, else 0: a coefficient of 0 turns off what it
    multiplies, even an infinite or NaN value (`label_smoothing * mean(logp)` at 0 with a
    masked class, whose log-probability is -inf; a loss weight of 0 on an infinite term)."""
    if not isinstance(coefficient, fx.Proxy):
        return product
    is_zero = low.once(("is zero", coefficient.node), lambda: coefficient == 0)
    return torch.where(is_zero, 0.0, product)


@lowering("operator.mul")
def _mul(low: _Lowering, node: Node, args: list[Value]) -> Value:
    a, b = args
    product = a * b
    if node.type.kind != "float":
        return product
    for (coefficient, c_id), other_id in (
        ((a, node.args[0]), node.args[1]),
        ((b, node.args[1]), node.args[0]),
    ):
        if low.is_coefficient(c_id) and not low.is_coefficient(other_id):
            return off_at_zero(low, coefficient, product)
    return product


@lowering("detach")
def _detach(low: _Lowering, node: Node, args: list[Value]) -> Value:
    (x,) = args
    return low.detached_value(x) if isinstance(x, fx.Proxy) else x


@lowering("ema")
def _ema(low: _Lowering, node: Node, args: list[Value]) -> Value:
    """The bias-corrected average: in training, of the calls so far and this one
    (m' = d·m + (1 − d)·x, m' / (1 − dⁿ⁺¹)); in eval mode, of the calls so far (x before
    any). n counts the training calls."""
    x, updated, counted, average, calls = (low.tensor(a) for a in args)
    decay = node.attrs["decay"]
    trained = updated / (1 - decay**counted)
    stored = torch.where(calls > 0, average / (1 - decay**calls), x)
    return torch.where(low.training, trained, stored)


@lowering("torch.where")
def _where(low: _Lowering, node: Node, args: list[Value]) -> Value:
    condition, a, b = args
    if not isinstance(condition, fx.Proxy):  # a condition of numbers: `where(0 > 0, 0, x)`
        condition = torch.full_like(low.step, bool(condition), dtype=torch.bool)
    if not isinstance(a, fx.Proxy) and not isinstance(b, fx.Proxy) and node.type.kind == "float":
        a = low.tensor(a)
    return torch.where(condition, a, b)


def _unary_tensor(fn: Callable[..., Any]) -> Lowering:
    return lambda low, node, args: fn(low.tensor(args[0]))


for _name in (
    "exp",
    "log",
    "log1p",
    "expm1",
    "sqrt",
    "abs",
    "square",
    "sign",
    "floor",
    "round",
    "sigmoid",
    "tanh",
    "relu",
    "cos",
    "xlogy",
    "logaddexp",
):
    _fn = getattr(torch, _name)
    if _name in ("xlogy", "logaddexp"):
        LOWERINGS[f"torch.{_name}"] = (
            lambda fn: lambda low, node, args: fn(low.tensor(args[0]), low.tensor(args[1]))
        )(_fn)
    else:
        LOWERINGS[f"torch.{_name}"] = _unary_tensor(_fn)
LOWERINGS["torch.nn.functional.logsigmoid"] = _unary_tensor(torch.nn.functional.logsigmoid)


# reductions: `where=` selects elements; an empty selection gives the identity of the op.


def _reduction_parts(low: _Lowering, node: Node, args: list[Value]) -> tuple[Value, Value, dict]:
    present = node.attrs["present"]
    x = args[0]
    mask = args[present.index("where")] if "where" in present else None
    dims = low.dims_of(node)
    if mask is not None:
        from lossdsl.ir.types import broadcast

        dims = broadcast(dims, low.dims_of(node, 1))
    axes = node.attrs.get("dim")
    options: dict[str, Any] = {}
    if axes is not None:
        options["dim"] = tuple(low.axis(dims, d) for d in axes)
    if node.attrs.get("keepdim"):
        options["keepdim"] = True
    return x, mask, options


def _reduce_all_or(fn_name: str, x: Value, options: dict) -> Value:
    if "dim" not in options:
        if options.get("keepdim"):
            return getattr(x, fn_name)(dim=tuple(range(-x.dim(), 0)), keepdim=True)
        return getattr(x, fn_name)()
    return getattr(x, fn_name)(**options)


@lowering("reduce_sum")
def _sum(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x, mask, options = _reduction_parts(low, node, args)
    if low.kind(node.args[0]) == "bool" or node.type.kind == "float":
        x = low.floating(x, low.kind(node.args[0]))
    if mask is not None:  # the same selection may be summed over several dims
        x = low.tensor(x)
        x = low.once(("select", mask.node, x.node), lambda: torch.where(mask, x, 0))
    return _reduce_all_or("sum", low.tensor(x), options)


@lowering("reduce_mean")
def _mean(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x, mask, options = _reduction_parts(low, node, args)
    x = low.tensor(low.floating(x, low.kind(node.args[0])))
    if mask is None:
        # The sum over the count, at least 1: over no elements (an empty batch) this is 0, as
        # a mean over an empty `where=` selection is, where torch.mean gives NaN.
        axes = options.get("dim")
        count: Value = x.numel() if axes is None else low.dim_size(x, axes[0])
        for axis in (axes or ())[1:]:
            count = count * low.dim_size(x, axis)
        return _reduce_all_or("sum", x, options) / torch.sym_max(count, 1)
    total = _reduce_all_or("sum", torch.where(mask, x, 0), options)
    count = _reduce_all_or("sum", torch.where(mask, torch.ones_like(x), 0), options)
    return total / torch.clamp(count, min=1)


@lowering("reduce_count")
def _count(low: _Lowering, node: Node, args: list[Value]) -> Value:
    m, mask, options = _reduction_parts(low, node, args)
    if mask is not None:
        m = m & mask
    return _reduce_all_or("sum", low.floating(m, "bool"), options)


def _extreme(fn_name: str, fill: float) -> Lowering:
    def lower(low: _Lowering, node: Node, args: list[Value]) -> Value:
        x, mask, options = _reduction_parts(low, node, args)
        x = low.tensor(low.floating(x, low.kind(node.args[0])) if mask is not None else x)
        if mask is not None:
            x = torch.where(mask, x, fill)
        if _may_be_empty(low.dims_of(node), options):
            return _with_identity(fn_name, x, fill, options)
        return _reduce_all_or(fn_name, x, options)

    return lower


def _may_be_empty(dims: tuple, options: dict) -> bool:
    """Whether a reduction may run over no element: it reduces a named dim (or `...`)."""
    axes = options.get("dim", tuple(range(-len(dims), 0)))
    return any(not isinstance(dims[axis], int) for axis in axes)


def _with_identity(fn_name: str, x: Value, fill: float, options: dict) -> Value:
    """amax/amin with one `fill` appended to the reduced elements: -inf/inf over no element,
    where torch raises. Eagerly the padding copies `x`; Inductor fuses it into the reduction."""
    axes = options.get("dim")
    rows = x.flatten() if axes is None else x.movedim(axes, tuple(range(-len(axes), 0)))
    if axes is not None:
        rows = rows.flatten(-len(axes))
    value = getattr(torch.nn.functional.pad(rows, (0, 1), value=fill), fn_name)(-1)
    if not options.get("keepdim"):
        return value
    if axes is None:  # every dim kept as a 1: add a zero of that shape (x[..., :0] is empty)
        return value + x[..., :0].sum(dim=None, keepdim=True)
    for axis in sorted(axes):  # negative axes counted in the result, from the left
        value = value.unsqueeze(axis)
    return value


LOWERINGS["reduce_max"] = _extreme("amax", -math.inf)
LOWERINGS["reduce_min"] = _extreme("amin", math.inf)


@lowering("reduce_logsumexp")
def _logsumexp(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x, mask, options = _reduction_parts(low, node, args)
    x = low.tensor(low.floating(x, low.kind(node.args[0])))
    if mask is not None:
        x = torch.where(mask, x, -math.inf)
    dim = options.get("dim", tuple(range(-len(low.dims_of(node)), 0)) or ())
    if not dim:
        return x
    keepdim = bool(options.get("keepdim", False))
    if mask is None and len(dim) == 1 and isinstance(x, fx.Proxy):
        # The one a log_softmax of the same logits uses: a z-loss beside a cross entropy
        # (logsumexp squared) then costs no pass of its own over the vocabulary.
        shared = low.logsumexp(x, dim[0])
        return shared.unsqueeze(dim[0]) if keepdim else shared
    return torch.logsumexp(x, dim=dim, keepdim=keepdim)


def _spread(root: bool) -> Lowering:
    def lower(low: _Lowering, node: Node, args: list[Value]) -> Value:
        x, mask, options = _reduction_parts(low, node, args)
        x = low.tensor(low.floating(x, low.kind(node.args[0])))
        correction = node.attrs.get("correction", 0)
        keep = {**options, "keepdim": True}
        if mask is None:
            mask = torch.ones_like(x, dtype=torch.bool)
        count = _reduce_all_or("sum", torch.where(mask, torch.ones_like(x), 0), keep)
        mean = _reduce_all_or("sum", torch.where(mask, x, 0), keep) / torch.clamp(count, min=1)
        squares = torch.where(mask, torch.square(x - mean), 0)
        total = _reduce_all_or("sum", squares, options)
        count = _reduce_all_or("sum", torch.where(mask, torch.ones_like(x), 0), options)
        variance = total / torch.clamp(count - correction, min=1)
        return torch.sqrt(variance) if root else variance

    return lower


LOWERINGS["reduce_var"] = _spread(False)
LOWERINGS["reduce_std"] = _spread(True)


@lowering("argmax")
def _argmax(low: _Lowering, node: Node, args: list[Value]) -> Value:
    (x,) = args
    axis = low.axis(low.dims_of(node), node.attrs["dim"])
    return torch.argmax(x, dim=axis, keepdim=bool(node.attrs.get("keepdim", False)))


# distributions


def _along(fn: Callable[..., Any]) -> Lowering:
    def lower(low: _Lowering, node: Node, args: list[Value]) -> Value:
        return fn(low.tensor(args[0]), dim=low.axis(low.dims_of(node), node.attrs["dim"]))

    return lower


LOWERINGS["torch.softmax"] = _along(torch.softmax)


@lowering("torch.log_softmax")
def _log_softmax(low: _Lowering, node: Node, args: list[Value]) -> Value:
    return low.log_softmax(args[0], low.axis(low.dims_of(node), node.attrs["dim"]))


@lowering("entropy")
def _entropy(low: _Lowering, node: Node, args: list[Value]) -> Value:
    axis = low.axis(low.dims_of(node), node.attrs["dim"])
    logp = low.log_softmax(args[0], axis)
    # p·log p is 0 where p is 0: a class of logit -inf (a masked vocabulary) has log p = -inf,
    # and 0·(-inf) is NaN. Below -1e30, p is 0 in every float dtype, so the clamp is exact, and
    # its gradient there is 0 where a `where` on -inf would leak NaN.
    return -torch.sum(torch.exp(logp) * logp.clamp(min=-1e30), dim=axis)


@lowering("gather")
def _gather(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x, index = args
    axis = low.axis(low.dims_of(node), node.attrs["dim"])
    x = low.tensor(x)
    low.check_indices(index, node.args[1], low.dim_size(x, axis), node.attrs["dim"])
    if low.dims_of(node) == (node.attrs["dim"],):
        # One value per class read at any number of indices (a class weight at each target):
        # the result has the index's dims, which torch.gather would want `x` to have too.
        return x[low.as_long(index)]
    picked = torch.gather(x, axis, low.as_long(index).unsqueeze(axis))
    return picked.squeeze(axis)


@lowering("sort")
def _sort(low: _Lowering, node: Node, args: list[Value]) -> Value:
    axis = low.axis(low.dims_of(node), node.attrs["dim"])
    descending = bool(node.attrs.get("descending", False))
    return torch.sort(low.tensor(args[0]), dim=axis, descending=descending).values


@lowering("cumsum")
def _cumsum(low: _Lowering, node: Node, args: list[Value]) -> Value:
    axis = low.axis(low.dims_of(node), node.attrs["dim"])
    return torch.cumsum(low.tensor(args[0]), dim=axis)


@lowering("rename")
def _rename(low: _Lowering, node: Node, args: list[Value]) -> Value:
    """The same tensor: dims are positions, and the renamed dim keeps its place."""
    return args[0]


@lowering("one_hot")
def _one_hot(low: _Lowering, node: Node, args: list[Value]) -> Value:
    (index,) = args
    n = node.attrs["n"]
    classes = n if isinstance(n, int) else low.size_of(n)
    low.check_indices(index, node.args[0], classes, str(n))
    # A comparison with the positions, not F.one_hot: that reads its indices to check them
    # (a data-dependent size under torch.compile, a recompilation per batch size), which
    # check_indices has already done, and it refuses an empty dim of classes.
    return (low.as_long(index).unsqueeze(-1) == low.positions(classes)).to(low.dtype)


@lowering("size")
def _size(low: _Lowering, node: Node, args: list[Value]) -> Value:
    return low.tensor(1.0) * low.size_of(node.attrs["dim"])


# schedules of `step`


def _progress(low: _Lowering, steps: Value, begin: Value) -> Value:
    """u = clamp((step - begin) / steps, 0, 1); a span of no steps (steps ≤ 0) is over at
    once: 1 from `begin` on (as `ops/scalar.py` has it), never 0/0."""
    since = low.step if isinstance(begin, int | float) and begin == 0 else low.step - begin
    if not isinstance(steps, fx.Proxy):
        return torch.clamp(since / steps, 0, 1) if steps > 0 else (since >= 0).to(low.dtype)
    return torch.where(steps > 0, torch.clamp(since / steps, 0, 1), (since >= 0).to(low.dtype))


@lowering("constant")
def _constant(low: _Lowering, node: Node, args: list[Value]) -> Value:
    return low.tensor(args[0])


@lowering("linear")
def _linear(low: _Lowering, node: Node, args: list[Value]) -> Value:
    start, end, steps, begin = args
    return start + (end - start) * _progress(low, steps, begin)


@lowering("cosine")
def _cosine(low: _Lowering, node: Node, args: list[Value]) -> Value:
    start, end, steps, begin = args
    u = _progress(low, steps, begin)
    return end + (start - end) * (1 + torch.cos(math.pi * u)) / 2


@lowering("exponential")
def _exponential(low: _Lowering, node: Node, args: list[Value]) -> Value:
    start, end, steps, begin = args
    numbers = not isinstance(end, fx.Proxy) and not isinstance(start, fx.Proxy)
    ratio = low.tensor(scalar.divide(end, start) if numbers else end / start)
    return start * torch.pow(ratio, _progress(low, steps, begin))


@lowering("warmup")
def _warmup(low: _Lowering, node: Node, args: list[Value]) -> Value:
    (steps,) = args
    return _progress(low, steps, 0)


@lowering("piecewise")
def _piecewise(low: _Lowering, node: Node, args: list[Value]) -> Value:
    boundaries, values = node.attrs["boundaries"], node.attrs["values"]
    value: Value = low.tensor(values[0])
    for boundary, before, after in zip(boundaries, values, values[1:], strict=False):
        value = value + (after - before) * (low.step >= boundary).to(low.dtype)
    return value


# fx frees each value after its last use by setting it to None (`;  a = b = None`): in code
# printed for reading that is noise, and a function's locals go when it returns anyway.
_RELEASES = re.compile(r";  (?:\w+ = )+None$|^\s*(?:\w+ = )+None$", re.MULTILINE)


def readable_code(graph_module: fx.GraphModule) -> str:
    """The graph's Python code without fx's `x = None` releases and blank lines."""
    code = _RELEASES.sub("", graph_module.code.strip("\n"))
    return "\n".join(line for line in code.splitlines() if line.strip())


def lower(
    ir: SpecIR, compiled: bool = False, collectives: Any = None, stepped: bool = False
) -> fx.GraphModule:
    """The fx graph of a checked spec; `compiled` when it goes to `torch.compile`.
    `collectives`: the data-parallel group `global_sum` sums over (the default group as it
    is now when omitted); `stepped`: the graph takes the totals of `begin_step` after the
    params (backend/collectives.py)."""
    return _Lowering(ir, compiled, collectives, stepped).run()


# Lowerings kept in their own modules register themselves on import.
from lossdsl.backend import collectives as _collectives  # noqa: E402, F401
from lossdsl.backend import contraction as _contraction  # noqa: E402, F401
from lossdsl.backend import patterns as _patterns  # noqa: E402, F401
from lossdsl.backend import robust as _robust  # noqa: E402, F401
