"""Can a spec run in slices of rows, and what adds up across the slices? (E205)

The backend (`backend/slicing.py`) carries out the plan made here; this module only reads the
IR and the op table, and never imports torch.

Terms:
- A *wide* dim is one some op needs whole: the class dim of a softmax, the contracted dim of
  a matmul, the dim a `gather` picks along (`Op.mixes`).
- A *sliced input* has a wide dim and at least one other dim: the logits `[B, T, V]`, the
  hidden states `[B, T, H]`. Its other dims, unless an op that reads the sliced inputs needs
  them whole too, are the *split* dims; a *row* is one position of them (a token).
- A slice cuts the split dims, outermost first: at level 1 it holds some whole rows of the
  outermost split dim (whole sequences), at level 2 some positions of the next one within one
  position of the first (tokens of one sequence), and so on.
- Per level, every node is computed before the slices (it reads no sliced input: masks,
  advantages, params), per slice (it reads one), or after them (it reads what the slices
  added up). A reduction over a dim the slice cuts is an *accumulator*: its partial results
  combine across slices (`Op.accumulate`). A per-slice value read after the slices (a
  per-token metric) is *collected* into a whole tensor, which it may only be if it has no
  wide dim.
- When the loss is affine in the accumulators and each of those adds up (sums, means,
  collected values), the gradient of each slice is known while the slice is computed: one
  pass. Otherwise the slices are computed again in the backward pass (two passes, the same
  memory bound).
"""

from __future__ import annotations

from dataclasses import dataclass

from lossdsl.analysis import curvature as dcp
from lossdsl.analysis.intervals import Interval
from lossdsl.diagnostics import Diagnostic
from lossdsl.ir import Node, SpecIR
from lossdsl.ir.types import ELLIPSIS, TensorType, broadcast, reduce_dims
from lossdsl.ops import OPS
from lossdsl.passes.renumber import reachable, renumbered

BEFORE, PER_SLICE, AFTER = "before", "per slice", "after"
ADDS_UP = ("sum", "collect")  # a mean needs its whole count first


@dataclass(frozen=True)
class Accumulator:
    node: int
    combine: str  # sum | mean | max | min | logsumexp | collect


@dataclass(frozen=True)
class Level:
    partial: tuple[str, ...]  # the split dims a slice cuts at this level
    per_slice: tuple[int, ...]  # nodes computed per slice, in order
    accumulators: tuple[Accumulator, ...]
    feeds: tuple[int, ...]  # nodes computed before the slices that the slices read
    one_pass: bool  # each slice's gradient is known while it is computed
    problem: Diagnostic | None = None  # why this level cannot run

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class SlicePlan:
    split: tuple[str, ...]  # row dims, outermost first; "..." stands for the leading dims
    wide: tuple[str, ...]
    sliced_inputs: tuple[str, ...]
    levels: tuple[Level, ...]  # levels[j] cuts split[: j + 1]
    row_dims: tuple[tuple[str, ...], ...] = ()  # each sliced input's dims of rows

    def finest_ok(self, wanted: int) -> Level | None:
        """The finest level at most `wanted` (0-based) that can run."""
        for level in reversed(self.levels[: wanted + 1]):
            if level.ok:
                return level
        return None


def plan_slices(ir: SpecIR) -> tuple[SlicePlan | None, list[Diagnostic]]:
    """The slicing plan of a spec (run on `means_as_sums(ir)`), or E205 naming the node that
    prevents slicing."""
    live = _live(ir)
    wide_inputs, sliced = _wide_and_sliced_inputs(ir, live)
    if not sliced:
        several = [s for s in wide_inputs if sum(map(_is_dim, s.dims)) > 1]
        if several:
            everything = _depending_on({s.node for s in several}, ir)
            return None, [_everything_mixed(ir, several[0].name, everything)]
        return None, [_nothing_to_slice(ir)]
    varying = _depending_on({ir.input(s.name).node for s in sliced}, ir) & live
    summed = next((n for n in ir.nodes if n.op == "global_sum" and n.id in varying), None)
    if summed is not None:
        return None, [_sum_over_ranks_per_slice(summed)]
    mixed = {d for node in ir.nodes if node.id in varying for d in _mixed_dims(ir, node)}
    # A slice cuts only the row dims every sliced input has: an input without the cut dim
    # (the rejected responses' T beside the chosen ones') would be read whole by each slice.
    split = [
        d
        for d in sliced[0].dims
        if _is_dim(d) and d not in mixed and all(d in s.dims for s in sliced)
    ]
    if not split:
        return None, [_everything_mixed(ir, sliced[0].name, varying)]
    wide = tuple(sorted({d for s in sliced for d in s.dims if d in mixed}, key=str))
    row_dims = tuple(tuple(d for d in s.dims if _is_dim(d) and d not in mixed) for s in sliced)
    levels = tuple(_level(ir, tuple(split[: j + 1]), varying, set(wide)) for j in range(len(split)))
    plan = SlicePlan(tuple(split), wide, tuple(s.name for s in sliced), levels, row_dims)
    if not levels[0].ok:
        assert levels[0].problem is not None
        return plan, [levels[0].problem]
    return plan, []


def has_wide_inputs(ir: SpecIR) -> bool:
    """Whether any input has a dim some op needs whole (else there is nothing to slice)."""
    return bool(_wide_and_sliced_inputs(ir, _live(ir))[0])


def _wide_and_sliced_inputs(ir: SpecIR, live: set[int]) -> tuple[list, list]:
    mixed_anywhere = {d for node in ir.nodes if node.id in live for d in _mixed_dims(ir, node)}
    wide = [s for s in ir.inputs if any(d in mixed_anywhere for d in s.dims)]
    sliced = [s for s in wide if any(_is_dim(d) and d not in mixed_anywhere for d in s.dims)]
    return wide, sliced


# ---- means --------------------------------------------------------------------------------


def means_as_sums(ir: SpecIR) -> SpecIR:
    """`mean(x, dim=D, where=m)` as `sum(x, dim=D, where=m) / max(count(m, dim=D), 1)` (and
    without `where=`, the sum over the product of the sizes), the same values: a sum adds up
    across slices, where a mean needs its count first. Means whose count the language cannot
    write (a mask with fewer dims than the value, reduced leading `...` dims) stay means."""
    nodes: list[Node] = []
    remap: dict[int, int] = {}

    def add(op: str, args: tuple, attrs: dict, type_: TensorType, like: Node) -> int:
        nodes.append(
            Node(
                id=len(nodes),
                op=op,
                args=args,
                attrs=attrs,
                type=type_,
                span=like.span,
                via=like.via,
            )
        )
        return len(nodes) - 1

    for node in ir.nodes:
        args = tuple(remap[a] for a in node.args)
        count = _count_of_mean(ir, node, args, add) if node.op == "mean" else None
        if count is None:
            nodes.append(node.model_copy(update={"id": len(nodes), "args": args}))
        else:
            attrs = dict(node.attrs)
            total = add("sum", args, attrs, node.type, node)
            one = add("const", (), {"value": 1.0}, TensorType("float", ()), node)
            floor = add("maximum", (count, one), {}, nodes[count].type, node)
            nodes.append(
                node.model_copy(
                    update={"id": len(nodes), "op": "div", "args": (total, floor), "attrs": {}}
                )
            )
        remap[node.id] = len(nodes) - 1
    return renumbered(ir, nodes, remap)


def _count_of_mean(ir: SpecIR, node: Node, args: tuple, add) -> int | None:
    present = node.attrs.get("present", ("x",))
    x_dims = ir.node(node.args[0]).type.dims
    reduced = node.attrs.get("dim")
    keepdim = bool(node.attrs.get("keepdim", False))
    if "where" in present:
        mask = node.args[present.index("where")]
        mask_dims = ir.node(mask).type.dims
        if mask_dims != broadcast(x_dims, mask_dims):
            return None
        attrs = {"dim": reduced, "keepdim": keepdim, "present": ("m",)}
        dims = reduce_dims(mask_dims, reduced, keepdim)
        return add("count", (args[present.index("where")],), attrs, TensorType("float", dims), node)
    axes = reduced if reduced is not None else tuple(d for d in x_dims if _is_dim(d))
    if ELLIPSIS in axes or (reduced is None and any(not _is_dim(d) for d in x_dims)):
        return None
    scalar = TensorType("float", ())
    size = add("const", (), {"value": 1.0}, scalar, node)
    for dim in axes:
        each = add("size", (), {"dim": dim}, scalar, node)
        size = add("mul", (size, each), {}, scalar, node)
    return size


# ---- dims ---------------------------------------------------------------------------------


def _is_dim(d: object) -> bool:
    return isinstance(d, str)  # a name or "...", not a literal size


def _reduced_dims(ir: SpecIR, node: Node) -> tuple:
    """The dims a reduction or mixing op works along: its `dim=`, or all of its operand's."""
    axes = node.attrs.get("dim")
    if axes is not None:
        return (axes,) if isinstance(axes, str) else tuple(axes)
    dims = broadcast(*(ir.node(a).type.dims for a in node.args))
    return tuple(d for d in dims if _is_dim(d))


def _mixed_dims(ir: SpecIR, node: Node) -> tuple:
    op = OPS.get(node.op)
    if op is None or not op.mixes:
        return ()
    return _reduced_dims(ir, node)


def _depending_on(sources: set[int], ir: SpecIR) -> set[int]:
    found = set(sources)
    for node in ir.nodes:
        if any(a in found for a in node.args):
            found.add(node.id)
    return found


# ---- one level ------------------------------------------------------------------------------


def _level(ir: SpecIR, partial: tuple[str, ...], varying: set[int], wide: set[str]) -> Level:
    where: dict[int, str] = {}
    accumulators: dict[int, Accumulator] = {}
    problem: Diagnostic | None = None
    for node in ir.nodes:
        if node.id not in varying:
            where[node.id] = BEFORE
            continue
        states = [where[a] for a in node.args]
        combine = _combine_across_slices(ir, node, partial)
        if node.op == "input":
            where[node.id] = PER_SLICE
        elif combine is not None and AFTER not in states:
            accumulators[node.id] = Accumulator(node.id, combine)
            where[node.id] = AFTER
        elif AFTER in states:
            where[node.id] = AFTER
            for arg, state in zip(node.args, states, strict=True):
                if state == PER_SLICE:
                    problem = problem or _collect(ir, arg, wide, accumulators, reader=node)
        else:
            where[node.id] = PER_SLICE
    for output in _outputs(ir):
        if where[output] == PER_SLICE:
            problem = problem or _collect(ir, output, wide, accumulators, reader=None)
    per_slice = tuple(n for n, state in where.items() if state == PER_SLICE)
    reads = {a for n in (*per_slice, *accumulators) for a in ir.node(n).args}
    feeds = tuple(
        sorted(
            {a for a in reads if where[a] == BEFORE}
            | {n for n in per_slice if ir.node(n).op == "input"}
        )
    )
    one_pass = problem is None and _affine_in(ir, accumulators, where)
    ordered = tuple(accumulators[n] for n in sorted(accumulators))
    return Level(partial, per_slice, ordered, feeds, one_pass, problem)


def _combine_across_slices(ir: SpecIR, node: Node, partial: tuple[str, ...]) -> str | None:
    """How a reduction over a dim the slices cut combines their partial results."""
    op = OPS.get(node.op)
    if op is None or op.accumulate is None:
        return None
    return op.accumulate if set(_reduced_dims(ir, node)) & set(partial) else None


def _live(ir: SpecIR) -> set[int]:
    """The nodes an output reads: a `let` that only an unchosen static choice reads (a sort
    over the batch for another loss type) does not decide how the spec slices."""
    return reachable(ir.nodes, set(_outputs(ir)))


def _outputs(ir: SpecIR) -> list[int]:
    """What the finish graph gives: terms, metrics, weights, the states' updates and the
    values reported beside them (states are read before the slices, updated after)."""
    adaptive = [s.update for s in ir.states] + [s.node for s in ir.states]
    adaptive += [p.node for p in ir.learned] + [e.node for e in ir.emas]
    return [v.node for v in (*ir.terms, *ir.metrics)] + list(ir.weights.values()) + adaptive


def _collect(
    ir: SpecIR,
    node_id: int,
    wide: set[str],
    accumulators: dict[int, Accumulator],
    reader: Node | None,
) -> Diagnostic | None:
    """A per-slice value read after the slices is gathered into one tensor, if it is small."""
    node = ir.node(node_id)
    kept = [d for d in node.type.dims if d in wide]
    if not kept:
        accumulators.setdefault(node_id, Accumulator(node_id, "collect"))
        return None
    what = f"`{node.name}`" if node.name else "this value"
    if reader is None:
        use = "it is an output of the spec"
    else:
        use = f"`{reader.name}` reads it" if reader.name else "a later value reads it"
        use += " after the slices"
    return Diagnostic(
        "E205",
        f"the spec cannot run in slices: {what} keeps the dim {kept[0]} of the sliced "
        f"inputs, and {use}",
        node.span,
        fix=f"reduce it over {kept[0]} where it is made (sum, mean, logsumexp, …)",
    )


# ---- one pass or two ------------------------------------------------------------------------


def _affine_in(ir: SpecIR, accumulators: dict[int, Accumulator], where: dict[int, str]) -> bool:
    """Whether the loss is affine in the accumulated values, each of which adds up across
    slices: then d loss / d accumulator is known before the slices run (one pass)."""
    AFFINE, OTHER = "affine", "other"
    dependence: dict[int, str] = {}
    for node in ir.nodes:
        if node.id in accumulators:
            adds_up = accumulators[node.id].combine in ADDS_UP
            dependence[node.id] = AFFINE if adds_up else OTHER
            continue
        if where[node.id] != AFTER:
            continue
        kinds = [dependence[a] for a in node.args if a in dependence]
        if not kinds:
            continue
        if OTHER in kinds:
            dependence[node.id] = OTHER
        elif node.op == "alias":
            dependence[node.id] = AFFINE
        else:
            dependence[node.id] = AFFINE if _affine_op(node, dependence) else OTHER
    weights = ir.weights
    for term in ir.terms:
        weight = ir.node(weights[term.name])
        if weight.op == "const" and weight.attrs.get("value") == 0:
            continue
        if dependence.get(term.node) == OTHER:
            return False
    return True


def _affine_op(node: Node, dependence: dict[int, str]) -> bool:
    """DCP says so: with the accumulated values as affine variables and everything else
    constant, the op's curvature rule gives affine."""
    op = OPS.get(node.op)
    if op is None:
        return False
    curvatures = [dcp.AFFINE if a in dependence else dcp.CONSTANT for a in node.args]
    unknown = [Interval.extended()] * len(node.args)
    return op.facts.curvature(curvatures, unknown, node.attrs) is dcp.AFFINE


# ---- E205 -----------------------------------------------------------------------------------


def _nothing_to_slice(ir: SpecIR) -> Diagnostic:
    span = ir.inputs[0].span if ir.inputs else ir.nodes[ir.step_node].span
    return Diagnostic(
        "E205",
        f"{ir.name} has nothing to slice: no input has both a dim an op needs whole "
        "(a class dim of a softmax, the contracted dim of a matmul) and a dim of rows",
        span,
        fix="load it without `chunk=`: its tensors are as large as its inputs",
    )


def _sum_over_ranks_per_slice(node: Node) -> Diagnostic:
    """A `global_sum` must be computed before the slices: one per slice would be a collective
    per slice, and ranks holding different numbers of rows run different numbers of slices."""
    return Diagnostic(
        "E205",
        "the spec cannot run in slices: global_sum() of a value computed from the sliced "
        "inputs would sum over ranks once per slice",
        node.span,
        fix="sum over ranks what reads no sliced input (a count of the mask), or load it "
        "without `chunk=`",
    )


def _everything_mixed(ir: SpecIR, input_name: str, varying: set[int]) -> Diagnostic:
    """Every dim of the sliced input is needed whole by some op: name the first such op
    over a dim that would otherwise hold rows."""
    spec = ir.input(input_name)
    named = [d for d in spec.dims if _is_dim(d)]
    for node in ir.nodes:
        if node.id not in varying:
            continue
        for dim in _mixed_dims(ir, node):
            if dim in named and dim != named[-1]:
                return Diagnostic(
                    "E205",
                    f"the spec cannot run in slices: {node.op}() over {dim} needs every "
                    f"{dim} of `{input_name}` at once, and the other dims of "
                    f"`{input_name}` are needed whole too",
                    node.span,
                    fix=f"keep {dim} a dim of rows: no softmax, gather, matmul, var or "
                    f"argmax over it",
                )
    return _nothing_to_slice(ir)


__all__ = ["Accumulator", "Level", "SlicePlan", "plan_slices", "ELLIPSIS"]
