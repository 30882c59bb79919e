"""Running a spec in slices of rows (`lossdsl.load(..., chunk=N)`), so that no intermediate of
size `[rows, V]` larger than one slice is ever alive.

`passes/slicing.py` decides what runs before, per slice and after the slices; this module
lowers each part with the ordinary lowering and runs it:

- the *feeds* graph computes, on the whole inputs, what the slices read (masks, per-token
  weights, params): small tensors;
- the *slice* graph computes one slice's partial results (sums, maxima, collected per-row
  values) from the sliced inputs and the feeds cut to the slice;
- the *finish* graph is the spec's own graph with the accumulated values given: it gives the
  loss, terms, weights and metrics.

One pass (the usual case: the loss is affine in what adds up across slices): before the
slices, the finish graph's gradient with respect to the accumulated values is taken (it does
not depend on their values); each slice's input gradients are then computed right after its
values, and stored (a slice of the logits' gradient; the head's gradient summed in float32).
The backward pass only scales them. Two passes (a loss not affine in them: a log-sigmoid of
per-sequence sums cut across slices): the forward keeps only the accumulated values; the
backward computes every slice again, with the gradients of the accumulated values, through
a slice graph of only the accumulators that the feeds carrying gradient reach (not a
reference model's log-probs).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

from lossdsl.backend.collectives import Collectives, global_sums
from lossdsl.backend.compiled import CompiledGraph, contracted
from lossdsl.backend.lowering import Value, _Lowering, _reduce_all_or, _reduction_parts
from lossdsl.ir import SpecIR
from lossdsl.ir.types import ELLIPSIS
from lossdsl.passes.renumber import reachable
from lossdsl.passes.slicing import Accumulator, Level, SlicePlan

# `chunk="auto"`: rows per slice such that one [rows, width] float32 block of the widest
# per-slice value (the logits of a slice) takes about this much memory; on the CPU more rows
# buy no speed (docs/performance.md). A GPU's products of the head with fewer rows than
# this wait on reading the head: on an H200 (benchmarks/head_products.py, bf16, V=128256,
# H=4096) 128-row slices made them 1.4-4.3x slower than one product over all rows, 512-row
# slices 0.95-1.46x, 2048-row slices 0.94-1.13x.
AUTO_SLICE_BYTES = 16 * 2**20
ACCELERATOR_MIN_ROWS = 512
_INITIAL = {"sum": 0.0, "mean": 0.0, "max": -math.inf, "min": math.inf, "logsumexp": -math.inf}

Key = Any  # a dim name, or ("...", i) for the i-th leading dim
Region = dict[Key, slice]


# ---- the three graphs -----------------------------------------------------------------------


class _FeedsLowering(_Lowering):
    """The spec's inputs, step and params in; the values the slices read out."""

    def build(self, feeds: tuple[int, ...]) -> fx.GraphModule:
        self.bind_spec_inputs()
        return self.finish([self.lower(f) for f in feeds])


class _FinishLowering(_Lowering):
    """The spec's own graph, with the feeds and accumulated values given."""

    def build(self, given: tuple[int, ...]) -> fx.GraphModule:
        self.bind_spec_inputs(given)
        return self.finish(self.outputs())


class _SliceLowering(_Lowering):
    """One slice: step and the feeds in (inputs keep their names), partial results out.

    A linear head's slice comes in vocabulary-major, `[V, rows…]` (`logits_by_vocab`): the
    product `head · rowsᵀ` that writes it runs faster on the CPU's BLAS than `rows · headᵀ`
    at a slice's few rows, and its gradient comes back in the same layout, the one both
    backward products read. The graph moves V last again, a view."""

    def build(
        self,
        feeds: tuple[int, ...],
        accumulators: tuple[Accumulator, ...],
        heads: tuple[int, ...] = (),
    ) -> fx.GraphModule:
        self.step = self.placeholder("step")
        self.dtype = self.name(self.step.dtype, "dtype")
        for node_id in feeds:
            node = self.ir.node(node_id)
            if node.op == "input":
                self.input_proxies[node.attrs["name"]] = self.placeholder(node.attrs["name"])
                self.bind_input(node.attrs["name"], node_id)
            elif node_id in heads:
                name = self.value_name(node_id)
                # In the head's dtype, converted here: compiled, the conversion is fused
                # into the kernels that read the logits and write their gradient.
                by_vocab = self.placeholder(f"{name}_by_vocab").to(self.dtype)
                self.values[node_id] = self.name(by_vocab.movedim(0, -1), name)
            else:
                self.values[node_id] = self.placeholder(self.value_name(node_id))
        outputs: list[Value] = []
        for accumulator in accumulators:
            outputs += self.partial(accumulator)
        return self.finish([self.tensor(v) for v in outputs])

    def partial(self, accumulator: Accumulator) -> list[Value]:
        node = self.ir.node(accumulator.node)
        if accumulator.combine != "mean":
            return [self.lower(accumulator.node)]
        args = [self.lower(a) for a in node.args]
        x, mask, options = _reduction_parts(self, node, args)
        x = self.tensor(self.floating(x, self.kind(node.args[0])))
        if mask is None:
            mask = torch.ones_like(x, dtype=torch.bool)
        total = _reduce_all_or("sum", torch.where(mask, x, 0), options)
        count = _reduce_all_or("sum", torch.where(mask, torch.ones_like(x), 0), options)
        return [total, count]

    def size_of(self, dim: str) -> Value:
        for name, proxy in self.input_proxies.items():
            dims = self.ir.input(name).dims
            if dim in dims:
                return proxy.size(self.axis(dims, dim))
        raise AssertionError(f"dim {dim} has no input among the slice's feeds")


@dataclass
class _SliceGraph:
    """A slice graph, the feeds it takes after `step` and the accumulators it gives."""

    graph: Any  # a GraphModule's forward, or its CompiledGraph
    feeds: tuple[int, ...]
    accumulators: tuple[int, ...]  # positions in the level's accumulators
    widths: tuple[int, ...]  # partial results per accumulator


@dataclass
class _Parts:
    level: Level
    feeds: Any  # a GraphModule's forward, or its CompiledGraph
    one_slice: _SliceGraph  # every accumulator
    finish: Any
    finish_eager: Any  # the finish GraphModule's forward
    computed_feeds: tuple[int, ...]  # feeds that are not inputs, in order
    heads: tuple[int, ...] = ()  # linear heads among the slice feeds: computed here
    # Two passes: the backward's slice graph per set of feeds carrying gradient, computing
    # only the accumulators those feeds reach (not a reference model's log-probs again).
    recompute: dict[frozenset[int], _SliceGraph] = field(default_factory=dict)


# ---- the module's graph ---------------------------------------------------------------------


class SlicedGraph:
    """Called like a lowered graph: `(*inputs, step[, params]) -> (loss, *terms, *weights,
    *metrics)`, computing in slices of about `chunk` rows."""

    def __init__(
        self,
        ir: SpecIR,
        plan: SlicePlan,
        chunk: int | str,
        compile: bool = False,
        backend: str = "inductor",
        mode: str | None = None,
        collectives: Collectives | None = None,
        stepped: bool = False,
    ):
        self.ir = ir
        self.plan = plan
        self.chunk = chunk
        self._compile = (compile, backend, mode)
        self._parts: dict[int, _Parts] = {}
        self.n_inputs = len(ir.inputs)
        self.constants = _constants(ir)
        self.collectives = collectives or Collectives()
        # A stepped graph takes the totals of `begin_step` after the params; otherwise each
        # `global_sum` is computed (and summed over ranks) once per call, with the feeds.
        self.totals = global_sums(ir) if stepped else ()
        self.sums_with_feeds = () if stepped else global_sums(ir)

    # ---- building -----------------------------------------------------------------------

    def parts(self, level: Level) -> _Parts:
        index = self.plan.levels.index(level)
        if index not in self._parts:
            passed = [f for f in level.feeds if f not in self.constants]
            computed = tuple(
                f for f in passed if self.ir.node(f).op != "input" and f not in self.totals
            )
            computed += tuple(g for g in self.sums_with_feeds if g not in computed)
            accumulators = level.accumulators
            stepped = bool(self.totals)
            feeds_graph = _FeedsLowering(self.ir, False, self.collectives, stepped).build(computed)
            heads = tuple(n for n in level.per_slice if self.is_linear_head(n))
            everything = tuple(range(len(accumulators)))
            one_slice = self.slice_graph(level, (*passed, *heads), everything)
            given = (*computed, *(a.node for a in accumulators))
            finish = _FinishLowering(self.ir, False, self.collectives, stepped).build(given)
            # Uncompiled, each graph is called through `forward`, as the unsliced module's is:
            # a GraphModule's own call prints a traceback of any error before raising it
            # (an out-of-range class index is an InputError, not a printed traceback).
            parts = _Parts(
                level,
                feeds_graph.forward,
                one_slice,
                finish.forward,
                finish.forward,
                computed,
                heads,
            )
            if self._compile[0]:
                # Each graph as `compile=True` compiles the unsliced one (backend/compiled.py):
                # every argument's named dims unbacked, so slices of any size, the last
                # uneven one included, and new shapes use the same compiled code.
                spec_args = [list(i.dims) for i in self.ir.inputs] + [[]]
                spec_args += [[len(self.ir.params)]] if self.ir.params else []
                spec_args += [[] for _ in self.ir.learned]  # learned params
                spec_args += [[len(self.ir.states)], []] if self.ir.states else []  # mode
                spec_args += [list(self.ir.node(t).type.dims) for t in self.totals]
                dims_of = [list(self.ir.node(n).type.dims) for n in given]
                parts.feeds = self.compiled(feeds_graph, spec_args)
                parts.finish = self.compiled(finish, spec_args + dims_of)
            self._parts[index] = parts
        return self._parts[index]

    def slice_graph(
        self, level: Level, feeds: tuple[int, ...], accumulators: tuple[int, ...]
    ) -> _SliceGraph:
        chosen = tuple(level.accumulators[i] for i in accumulators)
        # Lowered as for torch.compile when compiled (`compiled=`): the forms Inductor fuses
        # into fewer passes over the slice's logits, as in the unsliced compiled module.
        lowering = _SliceLowering(self.ir, self._compile[0], self.collectives)
        heads = tuple(f for f in feeds if self.is_linear_head(f))
        graph: Any = lowering.build(feeds, chosen, heads)
        if self._compile[0]:
            dims = [_graph_dims(self.ir.node(n).type.dims, n in heads) for n in feeds]
            graph = self.compiled(graph, [[], *dims], by_vocab=bool(heads))
        else:
            graph = graph.forward  # as the feeds and finish graphs are called
        widths = tuple(2 if a.combine == "mean" else 1 for a in chosen)
        return _SliceGraph(graph, feeds, accumulators, widths)

    def compiled(
        self, graph: fx.GraphModule, dims: list[list], by_vocab: bool = False
    ) -> CompiledGraph:
        _, backend, mode = self._compile
        # Inductor's folding of constant-valued tensors asks whether each is contiguous; of
        # one shaped like a vocabulary-major head it cannot tell with the rows unbacked.
        options = {"joint_graph_constant_folding": False} if by_vocab else None
        return CompiledGraph(graph, dims, backend, mode, contracted(self.ir), options)

    def recompute_graph(self, parts: _Parts, with_grad: frozenset[int]) -> _SliceGraph:
        """The backward's slice graph when the feeds `with_grad` carry gradient: the
        accumulators they reach, from the feeds those read."""
        if with_grad not in parts.recompute:
            level = parts.level
            feeds = parts.one_slice.feeds
            reached = set(with_grad) | {
                h for h in parts.heads if set(self.ir.node(h).args) & with_grad
            }
            for node in self.ir.nodes:
                if node.id not in feeds and set(node.args) & reached:
                    reached.add(node.id)
            chosen = tuple(i for i, a in enumerate(level.accumulators) if a.node in reached)
            read = reachable(self.ir.nodes, {level.accumulators[i].node for i in chosen})
            # Inputs are kept whether read or not: cutting one is a view, and the slice graph
            # reads the sizes of its dims off them.
            kept = tuple(f for f in feeds if f in read or self.ir.node(f).op == "input")
            same = chosen == parts.one_slice.accumulators and kept == feeds
            parts.recompute[with_grad] = (
                parts.one_slice if same else self.slice_graph(level, kept, chosen)
            )
        return parts.recompute[with_grad]

    def is_linear_head(self, node_id: int) -> bool:
        """`matmul(hidden, head, dim=H)` of a sliced input `[…, H]` and a whole one `[V, H]`.

        Its slices are computed outside the slice graph (a linear layer of the slice's rows)
        and so is their backward: the head's gradient is added into its float32 buffer by one
        in-place matrix product per slice, with no `[V, H]` temporary; the slice's rows'
        gradient is one product with the head."""
        node = self.ir.node(node_id)
        if node.op != "matmul":
            return False
        a, b = (self.ir.node(arg) for arg in node.args)
        if a.op != "input" or b.op != "input":
            return False
        k = node.attrs["dim"]
        a_dims, b_dims = a.type.dims, b.type.dims
        return (
            a.attrs["name"] in self.plan.sliced_inputs
            and b.attrs["name"] not in self.plan.sliced_inputs
            and len(b_dims) == 2
            and b_dims[1] == k
            and bool(a_dims)
            and a_dims[-1] == k
            and b_dims[0] not in a_dims
        )

    # ---- calling ------------------------------------------------------------------------

    def __call__(self, *args: Any) -> tuple[torch.Tensor, ...]:
        inputs = args[: self.n_inputs]
        step = args[self.n_inputs]
        shapes = _Shapes(self.ir, inputs)
        level, tiles = self.tiling(shapes)
        parts = self.parts(level)
        computed = parts.feeds(*args)
        values: dict[int, Any] = dict(zip(parts.computed_feeds, computed, strict=True))
        for spec, tensor in zip(self.ir.inputs, inputs, strict=True):
            values[spec.node] = tensor
        given_totals = args[len(args) - len(self.totals) :] if self.totals else ()
        values.update(zip(self.totals, given_totals, strict=True))
        run = _SliceRun(self.ir, parts, shapes, tiles, step, values)
        if level.one_pass:
            coefficients = run.coefficients(args)
            results = _OnePass.apply(run, coefficients, *run.differentiable_feeds())
            wide_loss, accumulated = results[0], results[1:]
        else:
            run.recompute = self.recompute_graph(parts, frozenset(run.grad_feeds))
            accumulated = _TwoPass.apply(run, *run.differentiable_feeds())
            wide_loss = None
        outputs = parts.finish(*args, *computed, *accumulated)
        if wide_loss is None:
            return tuple(outputs)
        loss = outputs[0] + (wide_loss - wide_loss.detach())
        return (loss, *outputs[1:])

    def tiling(self, shapes: _Shapes) -> tuple[Level, list[Region]]:
        """The level to run at and its slices, for these sizes."""
        split = shapes.split_keys(self.plan.split)
        sizes = [shapes.size(k) for k in split]
        rows = self.rows_per_slice(shapes)
        cut = len(split) - 1
        for position in range(len(split)):
            if self.rows_within(shapes, split[: position + 1]) <= rows:
                cut = position
                break
        wanted = self.plan.split.index(_plan_dim(split[cut])) if split else 0
        level = self.plan.finest_ok(wanted)
        assert level is not None  # level 0 is ok, or loading raised E205
        deepest = max(i for i, k in enumerate(split) if _plan_dim(k) in level.partial)
        cut = min(cut, deepest)
        inner = self.rows_within(shapes, split[: cut + 1])
        width = max(1, min(sizes[cut], rows // max(inner, 1))) if sizes else 1
        return level, _regions(split, sizes, cut, width)

    def rows_within(self, shapes: _Shapes, cut: list[Key]) -> int:
        """Rows in one position of the last dim of `cut` (the dims before it at one
        position each): the most any sliced input has."""
        most = 1
        for dims in self.plan.row_dims:
            keys = [k for k in shapes.axes(dims) if k is not None]
            most = max(most, math.prod(shapes.size(k) for k in keys if k not in cut))
        return most

    def rows_per_slice(self, shapes: _Shapes) -> int:
        if isinstance(self.chunk, int):
            return self.chunk
        width = max(
            (
                shapes.row_width(self.ir.node(n).type.dims, self.plan.split)
                for n in self.plan.levels[-1].per_slice
            ),
            default=1,
        )
        rows = max(1, AUTO_SLICE_BYTES // (4 * max(width, 1)))
        if shapes.device.type != "cpu":
            rows = max(rows, ACCELERATOR_MIN_ROWS)
        return rows - rows % 8 if rows >= 16 else rows


def _graph_dims(dims: tuple, head: bool) -> list:
    """A feed's dims as the slice graph takes it: a head's vocabulary first."""
    return [dims[-1], *dims[:-1]] if head else list(dims)


def _constants(ir: SpecIR) -> set[int]:
    """Nodes of numbers alone (no input, param or step; not `size(D)`, which in a slice would
    read the slice's size): each graph computes them itself."""
    found: set[int] = set()
    for node in ir.nodes:
        leaf = node.op == "const"
        if leaf or (
            node.args
            and node.op not in ("input", "param", "step")
            and all(a in found for a in node.args)
        ):
            found.add(node.id)
    return found


def _plan_dim(key: Key) -> str:
    return ELLIPSIS if isinstance(key, tuple) else key


def _regions(split: list[Key], sizes: list[int], cut: int, width: int) -> list[Region]:
    """Slices holding one position of each dim before `cut`, `width` positions of `cut`, and
    every position after it."""
    outer = [range(n) for n in sizes[:cut]]
    regions: list[Region] = []
    for index in _product(outer):
        for piece in _even_pieces(sizes[cut], width):
            region: Region = {k: slice(i, i + 1) for k, i in zip(split[:cut], index, strict=True)}
            region[split[cut]] = piece
            regions.append(region)
    return regions


def _even_pieces(size: int, width: int) -> list[slice]:
    """`size` positions in as few pieces of at most `width` as can be, of sizes that differ by
    at most one: no last piece of 1 (a size-1 slice would compile a graph of its own)."""
    count = -(-size // width)
    base, extra = divmod(size, count) if count else (0, 0)
    pieces, start = [], 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        pieces.append(slice(start, stop))
        start = stop
    return pieces


def _product(ranges: list[range]) -> list[tuple[int, ...]]:
    combos: list[tuple[int, ...]] = [()]
    for r in ranges:
        combos = [(*c, i) for c in combos for i in r]
    return combos


class _Shapes:
    """Sizes of the named dims and of the leading `...` dims, read off the inputs."""

    def __init__(self, ir: SpecIR, inputs: tuple[torch.Tensor, ...]):
        self.named: dict[str, int] = {}
        self.leading: tuple[int, ...] = ()
        self.device = inputs[0].device if inputs else torch.device("cpu")
        for spec, tensor in zip(ir.inputs, inputs, strict=True):
            explicit = [d for d in spec.dims if d != ELLIPSIS]
            shape = tuple(tensor.shape)
            if spec.dims and spec.dims[0] == ELLIPSIS:
                self.leading = shape[: len(shape) - len(explicit)]
            for dim, size in zip(explicit, shape[len(shape) - len(explicit) :], strict=True):
                if isinstance(dim, str):
                    self.named.setdefault(dim, size)

    def split_keys(self, split: tuple[str, ...]) -> list[Key]:
        keys: list[Key] = []
        for dim in split:
            if dim == ELLIPSIS:
                keys += [(ELLIPSIS, i) for i in range(len(self.leading))]
            else:
                keys.append(dim)
        return keys

    def size(self, key: Key) -> int:
        return self.leading[key[1]] if isinstance(key, tuple) else self.named[key]

    def axes(self, dims: tuple) -> list[Key | None]:
        """The key of each axis of a value of these dims (None: a literal size)."""
        keys: list[Key | None] = []
        for dim in dims:
            if dim == ELLIPSIS:
                keys += [(ELLIPSIS, i) for i in range(len(self.leading))]
            else:
                keys.append(dim if isinstance(dim, str) else None)
        return keys

    def shape(self, dims: tuple) -> tuple[int, ...]:
        return tuple(1 if k is None else self.size(k) for k in self.axes(dims)) if dims else ()

    def row_width(self, dims: tuple, split: tuple[str, ...]) -> int:
        """Elements per row: the product of the sizes of the dims that are not split."""
        keys = self.axes(dims)
        return math.prod(self.size(k) for k in keys if k is not None and _plan_dim(k) not in split)


def _cut(value: Any, dims: tuple, shapes: _Shapes, region: Region) -> Any:
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return value
    index = tuple(
        region.get(k, slice(None)) if k is not None else slice(None) for k in shapes.axes(dims)
    )
    return value[index]


# ---- one run over the slices --------------------------------------------------------------


class _SliceRun:
    """The slices of one call: their inputs, and what they add up to."""

    def __init__(
        self,
        ir: SpecIR,
        parts: _Parts,
        shapes: _Shapes,
        tiles: list[Region],
        step: torch.Tensor,
        values: dict[int, Any],
    ):
        self.ir = ir
        self.parts = parts
        self.level = parts.level
        self.shapes = shapes
        self.tiles = tiles
        self.step = step
        self.values = values
        self.recompute: _SliceGraph | None = None  # two passes: the backward's slice graph
        self.grad_feeds = [
            f
            for f in parts.one_slice.feeds
            if f not in parts.heads
            and isinstance(values[f], torch.Tensor)
            and values[f].requires_grad
        ]

    def differentiable_feeds(self) -> list[torch.Tensor]:
        return [self.values[f] for f in self.grad_feeds]

    def dims(self, node_id: int) -> tuple:
        return self.ir.node(node_id).type.dims

    # ---- per slice --------------------------------------------------------------------

    def slice_inputs(
        self, graph: _SliceGraph, region: Region, with_grad: bool
    ) -> tuple[list[Any], list[tuple[int, torch.Tensor]]]:
        """A slice graph's arguments for one slice, and the leaves to differentiate, by
        feed: the cut feeds that carry gradient and the outputs of linear heads that do."""
        inputs, leaves = [], []
        for f in graph.feeds:
            if f in self.parts.heads:
                value = self.head_output(f, region)
                if with_grad and self.head_needs_grad(f):
                    leaves.append((f, value.requires_grad_()))
            else:
                value = _cut(self.values[f], self.dims(f), self.shapes, region)
                if with_grad and f in self.grad_feeds:
                    value = value.detach().requires_grad_()
                    leaves.append((f, value))
                elif isinstance(value, torch.Tensor):
                    value = value.detach()
            inputs.append(value)
        return inputs, leaves

    def head_operands(self, node_id: int, region: Region) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.ir.node(node_id).args
        return _cut(self.values[a], self.dims(a), self.shapes, region).detach(), self.values[
            b
        ].detach()

    def head_output(self, node_id: int, region: Region) -> torch.Tensor:
        """A slice of `matmul(hidden, head)` vocabulary-major, `[V, rows…]` (the slice graph
        takes it so): in the operands' dtype when they share one (the graph converts it to
        the compute dtype), else in the compute dtype."""
        rows, head = self.head_operands(node_id, region)
        if rows.dtype != head.dtype:
            rows, head = rows.to(self.step.dtype), head.to(self.step.dtype)
        # As one matrix of rows: a slice `[1, rows, H]` of `[B, T, H]` keeps the stride of B,
        # which torch.matmul would not fold into one product, running a slower batched one.
        flat = rows.reshape(-1, rows.shape[-1])
        by_vocab = torch.mm(head, flat.T)
        return by_vocab.reshape(head.shape[0], *rows.shape[:-1])

    def head_needs_grad(self, node_id: int) -> bool:
        return any(a in self.grad_feeds for a in self.ir.node(node_id).args)

    def partials(self, graph: _SliceGraph, inputs: list[Any]) -> list[list[torch.Tensor]]:
        flat = list(graph.graph(self.step, *inputs))
        grouped, at = [], 0
        for width in graph.widths:
            grouped.append(flat[at : at + width])
            at += width
        return grouped

    def accumulator_region(self, accumulator: Accumulator, region: Region) -> tuple:
        keys = self.shapes.axes(self.dims(accumulator.node))
        return tuple(region.get(k, slice(None)) if k is not None else slice(None) for k in keys)

    # ---- accumulating -----------------------------------------------------------------

    def start(self) -> list[list[torch.Tensor | None]]:
        return [[None] * w for w in self.parts.one_slice.widths]

    def add(
        self,
        totals: list[list[torch.Tensor | None]],
        partials: list[list[torch.Tensor]],
        region: Region,
    ) -> None:
        for accumulator, kept, new in zip(self.level.accumulators, totals, partials, strict=True):
            index = self.accumulator_region(accumulator, region)
            for i, part in enumerate(new):
                part = part.detach()
                if kept[i] is None:
                    shape = self.shapes.shape(self.dims(accumulator.node))
                    initial = _INITIAL.get(accumulator.combine)
                    kept[i] = (
                        torch.empty(shape, dtype=part.dtype, device=part.device)
                        if initial is None
                        else torch.full(shape, initial, dtype=part.dtype, device=part.device)
                    )
                whole = kept[i]
                assert whole is not None
                whole[index] = _combine(accumulator.combine, whole[index], part)

    def values_of(self, totals: list[list[torch.Tensor | None]]) -> list[torch.Tensor]:
        """Each accumulator's value: a mean is its sum over its count."""
        out = []
        for accumulator, kept in zip(self.level.accumulators, totals, strict=True):
            if accumulator.combine == "mean":
                total, count = kept
                assert total is not None and count is not None
                out.append(total / torch.clamp(count, min=1))
            else:
                assert kept[0] is not None
                out.append(kept[0])
        return out

    # ---- gradients ----------------------------------------------------------------------

    def coefficients(self, args: tuple[Any, ...]) -> list[torch.Tensor | None]:
        """d loss / d accumulated value, from the finish graph (affine in them, so any value
        of theirs gives the same): the one-pass cotangents of the slices."""
        zeros = []
        for accumulator in self.level.accumulators:
            shape = self.shapes.shape(self.dims(accumulator.node))
            zeros.append(
                torch.zeros(
                    shape, dtype=self.step.dtype, device=self.step.device, requires_grad=True
                )
            )
        computed = [self.values[f] for f in self.parts.computed_feeds]
        with torch.enable_grad():
            detached = [c.detach() if isinstance(c, torch.Tensor) else c for c in computed]
            loss = self.parts.finish_eager(*args, *detached, *zeros)[0]
            if not loss.requires_grad:
                return [None] * len(zeros)
            grads = torch.autograd.grad(loss, zeros, allow_unused=True)
        return [None if g is None else g.detach() for g in grads]

    def new_gradients(self) -> list[torch.Tensor]:
        buffers = []
        for f in self.grad_feeds:
            value = self.values[f]
            sliced = any(
                k is not None and k in self.tiles[0] for k in self.shapes.axes(self.dims(f))
            )
            dtype = value.dtype if sliced else torch.promote_types(value.dtype, torch.float32)
            buffers.append(torch.zeros(value.shape, dtype=dtype, device=value.device))
        return buffers

    def backprop(
        self,
        region: Region,
        partials: list[list[torch.Tensor]],
        cotangents: list[list[torch.Tensor | None]],
        leaves: list[tuple[int, torch.Tensor]],
        gradients: list[torch.Tensor],
    ) -> None:
        outputs, grads_out = [], []
        for parts, cots in zip(partials, cotangents, strict=True):
            for part, cot in zip(parts, cots, strict=True):
                if cot is not None and part.requires_grad:
                    outputs.append(part)
                    grads_out.append(cot.expand_as(part) if cot.shape != part.shape else cot)
        if not outputs or not leaves:
            return
        found = torch.autograd.grad(
            outputs, [leaf for _, leaf in leaves], grads_out, allow_unused=True
        )
        buffers = dict(zip(self.grad_feeds, gradients, strict=True))
        for (f, _), grad in zip(leaves, found, strict=True):
            if grad is None:
                continue
            if f in self.parts.heads:
                self.head_backward(f, grad, region, buffers)
            else:
                self.add_gradient(f, buffers[f], grad, region)

    def add_gradient(
        self, node_id: int, buffer: torch.Tensor, grad: torch.Tensor, region: Region
    ) -> None:
        index = tuple(
            region.get(k, slice(None)) if k is not None else slice(None)
            for k in self.shapes.axes(self.dims(node_id))
        )
        if buffer.dim() == 0:
            buffer += grad.to(buffer.dtype)
        else:
            buffer[index] += grad.to(buffer.dtype)

    def head_backward(
        self, node_id: int, grad: torch.Tensor, region: Region, buffers: dict[int, torch.Tensor]
    ) -> None:
        """The gradients of `linear(rows, head)` from the gradient of its slice, `[V, rows…]`
        as `head_output` gives it: the rows' is `(headᵀ · grad)ᵀ`; the head's, `grad · rows`,
        added into its buffer in place."""
        a, b = self.ir.node(node_id).args
        rows, head = self.head_operands(node_id, region)
        # In the dtype the slice's logits were made in (`head_output`): with a bf16 head and
        # bf16 rows both products run at bf16 speed, the head's summing into float32.
        grad_by_vocab = grad.reshape(grad.shape[0], -1)
        if a in buffers:
            rows_grad = torch.mm(head.T, grad_by_vocab.to(head.dtype)).T.reshape(rows.shape)
            self.add_gradient(a, buffers[a], rows_grad, region)
        if b in buffers:
            add_product(buffers[b], grad_by_vocab, rows.reshape(-1, rows.shape[-1]))


def add_product(whole: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """`whole += a · b` in `whole`'s dtype (the float32 buffer of a bf16 head's gradient).
    Half-precision operands are multiplied at their own speed: on CUDA the float32 sums go
    straight into the buffer; elsewhere (the CPU's products cannot write another dtype than
    they read) each block of `a`'s rows is multiplied in half precision, its product rounded
    to half precision once, and added into the buffer."""
    if a.dtype == whole.dtype or a.dtype != b.dtype or a.dtype not in _HALF:
        whole.addmm_(a.to(whole.dtype), b.to(whole.dtype))
    elif _writes_float32_from_half(whole):
        torch.addmm(whole, a, b, out_dtype=whole.dtype, out=whole)
    else:
        # Blocks of rows keep the half-precision product small (2048 x H) and in cache:
        # 32 slices of [32768, 128] x [128, 1024] took 1.2-1.3 s this way, 1.9-2.0 s as a
        # float32 product of converted operands, 3.4 s as one [V, H] product then added.
        for start in range(0, a.shape[0], _PRODUCT_BLOCK_ROWS):
            block = slice(start, start + _PRODUCT_BLOCK_ROWS)
            whole[block].add_(torch.mm(a[block], b))


_HALF = (torch.bfloat16, torch.float16)
_PRODUCT_BLOCK_ROWS = 2048


def _writes_float32_from_half(whole: torch.Tensor) -> bool:
    return (
        whole.is_cuda
        and whole.dtype == torch.float32
        and _adds_half_products_in_float32(whole.device)
    )


@functools.cache
def _adds_half_products_in_float32(device: torch.device) -> bool:
    """Whether this device's `addmm` adds a product of bf16 operands into a float32 tensor
    in place (CUDA, torch 2.8 and later): asked once per device, as 1 + 1·1."""
    whole = torch.ones(1, 1, device=device)
    one = torch.ones(1, 1, dtype=torch.bfloat16, device=device)
    try:
        torch.addmm(whole, one, one, out_dtype=torch.float32, out=whole)
    except (TypeError, RuntimeError, NotImplementedError):
        return False
    return whole.item() == 2.0


def _combine(how: str, whole: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
    if how in ("sum", "mean"):
        return whole + part
    if how == "max":
        return torch.maximum(whole, part)
    if how == "min":
        return torch.minimum(whole, part)
    if how == "logsumexp":
        return torch.logaddexp(whole, part)
    return part  # collect: each slice writes its own region


class _OnePass(torch.autograd.Function):
    """Values and input gradients slice by slice; the backward scales the stored gradients."""

    @staticmethod
    def forward(ctx, run: _SliceRun, coefficients: list, *feeds: torch.Tensor):  # type: ignore[override]
        gradients = run.new_gradients()
        totals = run.start()
        wide_loss = torch.zeros((), dtype=run.step.dtype, device=run.step.device)
        for region in run.tiles:
            with torch.enable_grad():
                inputs, leaves = run.slice_inputs(run.parts.one_slice, region, with_grad=True)
                partials = run.partials(run.parts.one_slice, inputs)
                cotangents = []
                for accumulator, parts, c in zip(
                    run.level.accumulators, partials, coefficients, strict=True
                ):
                    if c is None:
                        cotangents.append([None] * len(parts))
                        continue
                    index = run.accumulator_region(accumulator, region)
                    cotangents.append([c[index]] + [None] * (len(parts) - 1))
                run.backprop(region, partials, cotangents, leaves, gradients)
            run.add(totals, partials, region)
        values = run.values_of(totals)
        for value, c in zip(values, coefficients, strict=True):
            if c is not None:
                wide_loss = wide_loss + (value * c).sum()
        ctx.gradients = gradients
        ctx.mark_non_differentiable(*values)
        return (wide_loss, *values)

    @staticmethod
    def backward(ctx, grad_loss, *unused):  # type: ignore[override]
        # Scaled in place: the buffers are this call's own, and a copy of the head's gradient
        # would double the largest tensor of the backward.
        gradients, ctx.gradients = ctx.gradients, None
        if gradients is None:
            raise RuntimeError(
                "the backward of a sliced loss runs once (its gradients were computed with "
                "its values); call the module again for another backward"
            )
        for g in gradients:
            g.mul_(grad_loss.to(g.dtype))
        return (None, None, *gradients)


class _TwoPass(torch.autograd.Function):
    """Values slice by slice; the backward computes each slice again with its gradients."""

    @staticmethod
    def forward(ctx, run: _SliceRun, *feeds: torch.Tensor):  # type: ignore[override]
        totals = run.start()
        for region in run.tiles:
            inputs, _ = run.slice_inputs(run.parts.one_slice, region, with_grad=False)
            run.add(totals, run.partials(run.parts.one_slice, inputs), region)
        values = run.values_of(totals)
        ctx.run = run
        ctx.totals = totals
        ctx.values = values
        return tuple(values)

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        run: _SliceRun = ctx.run
        graph = run.recompute
        assert graph is not None
        gradients = run.new_gradients()
        for region in run.tiles:
            with torch.enable_grad():
                inputs, leaves = run.slice_inputs(graph, region, with_grad=True)
                partials = run.partials(graph, inputs)
                cotangents = [
                    _slice_cotangent(
                        run,
                        run.level.accumulators[i],
                        parts,
                        ctx.totals[i],
                        ctx.values[i],
                        grads[i],
                        region,
                    )
                    for i, parts in zip(graph.accumulators, partials, strict=True)
                ]
                run.backprop(region, partials, cotangents, leaves, gradients)
        return (None, *gradients)


def _slice_cotangent(
    run: _SliceRun,
    accumulator: Accumulator,
    parts: list[torch.Tensor],
    kept: list[torch.Tensor | None],
    value: torch.Tensor,
    grad: torch.Tensor | None,
    region: Region,
) -> list[torch.Tensor | None]:
    if grad is None:
        return [None] * len(parts)
    index = run.accumulator_region(accumulator, region)
    g = grad[index]
    how = accumulator.combine
    if how == "mean":
        count = kept[1]
        assert count is not None
        return [g / torch.clamp(count[index], min=1), None]
    if how in ("max", "min"):
        return [g * (parts[0].detach() == value[index])]
    if how == "logsumexp":
        whole = value[index]
        share = torch.exp(parts[0].detach() - whole)
        return [g * torch.where(torch.isneginf(whole), 0.0, share)]
    return [g]
