"""Pattern lowerings: IR shapes that have a faster torch form than one op at a time.

The lowering consults these before it lowers a node's arguments (`_Lowering.lower`), so a
pattern that matches decides which of the node's operands reach the graph at all; the ones it
does not use are never emitted. Each pattern reads the IR, lowers the operands it needs
through `sub` (the plain lowering, or the metric lowering that reads through `detach`) and
returns the value, or returns None to leave the node to the op table's lowering.

Every pattern gives the values and gradients of the unfused lowering (the tests in
tests/backend/test_patterns.py compare them in float64):

- `gather(log_softmax(x, dim=C), t, dim=C)` with C the last dim: `-nll_loss` of the
  (shared) log_softmax, `reduction="none"`, on the flattened `[*, C]` rows (a free view
  eagerly), or under torch.compile on nll_loss's `[N, C, *]` layout (`movedim`, which
  Inductor indexes without the division the flattening needs over unbacked sizes). nll_loss is the
  gather; what changes is its backward, a one-hot compare that torch.compile fuses into
  log_softmax's backward (one pass), where `gather`'s backward is a zero-filled `[*, C]`
  buffer plus an extern `scatter_add`. That is `F.cross_entropy` minus the log_softmax,
  which stays shared with label smoothing, entropy and other readers. The index is never
  ignored (nll_loss's `ignore_index` is set to an int64 no index can hold); masks stay the
  spec's (`where(valid, t, 0)`, masked means that give 0 over nothing).
- Huber's branch form `where(|r| < d, 0.5·r², d·(|r| - d/2))`: lowered like the `huber`
  op (backend/robust.py), `m·(|r| - m/2)` with `m = min(|r|, d)`. Same values (the
  halvings are exact) and gradients, and no `where` whose condition reads a param: under
  torch.compile such a condition is saved for the backward as a bool tensor, whose
  vectorised store costs ten times the whole loss on CPU.

Log-sum-exp shapes (`log(sum(exp(x)))`, `log(softmax(x))`) are rewritten in the IR by the
stability pass and reach the backend as `logsumexp`/`log_softmax`, lowered to
`torch.logsumexp`/`torch.log_softmax` by the op table.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx as fx

from lossdsl.backend.lowering import PATTERNS, Value, _Lowering
from lossdsl.backend.robust import huber_without_where
from lossdsl.ir import Node

Sub = Callable[[int], Value]
_NEVER_AN_INDEX = torch.iinfo(torch.int64).min


def pattern(op: str) -> Callable:
    def register(fn: Callable[[_Lowering, Node, Sub], Value | None]) -> Callable:
        PATTERNS.setdefault(op, []).append(fn)
        return fn

    return register


# ---- reading the IR ---------------------------------------------------------------------


def _node(low: _Lowering, node_id: int) -> Node:
    node = low.ir.node(node_id)
    while node.op == "alias":
        node = low.ir.node(node.args[0])
    return node


def _same(low: _Lowering, a: int, b: int) -> bool:
    """The same value: the same node, or equal ops on the same values. Pair by pair from a
    stack of its own, each pair once: no recursion however deep the operands are."""
    pairs, compared = [(a, b)], set()
    while pairs:
        x, y = (_node(low, n) for n in pairs.pop())
        if x.id == y.id or (x.id, y.id) in compared:
            continue
        compared.add((x.id, y.id))
        if x.op != y.op or x.op in ("input", "param", "step") or x.attrs != y.attrs:
            return False
        if x.type != y.type or len(x.args) != len(y.args):
            return False
        pairs.extend(zip(x.args, y.args, strict=True))
    return True


def _is_const(low: _Lowering, node_id: int, value: float) -> bool:
    node = _node(low, node_id)
    return node.op == "const" and node.attrs.get("value") == value


def _scaled(low: _Lowering, node_id: int, factor: float) -> int | None:
    """`x` where the node is `factor * x` or `x * factor`."""
    node = _node(low, node_id)
    if node.op != "mul":
        return None
    a, b = node.args
    if _is_const(low, a, factor):
        return b
    if _is_const(low, b, factor):
        return a
    return None


def _unary_arg(low: _Lowering, node_id: int, op: str) -> int | None:
    node = _node(low, node_id)
    return node.args[0] if node.op == op and len(node.args) == 1 else None


# ---- gather of a log_softmax: nll_loss ----------------------------------------------------


@pattern("gather")
def _picked_log_probability(low: _Lowering, node: Node, sub: Sub) -> Value | None:
    source_id, index_id = node.args
    source = _node(low, source_id)
    if source.op != "log_softmax" or source.attrs.get("dim") != node.attrs["dim"]:
        return None
    dims = low.dims_of(node)
    index_type = low.ir.node(index_id).type
    if low.axis(dims, node.attrs["dim"]) != -1 or index_type.kind != "int":
        return None
    if tuple(index_type.dims) != tuple(dims[:-1]):  # no broadcasting: gather has none
        return None
    log_probs, index = sub(source_id), sub(index_id)
    if not isinstance(log_probs, fx.Proxy) or not isinstance(index, fx.Proxy):
        return None
    classes = low.dim_size(log_probs, -1)
    low.check_indices(index, index_id, classes, node.attrs["dim"])
    if not low.compiled:
        # The `[N, C]` rows are a free view of the log_softmax's output.
        rows = log_probs.reshape(index.numel(), classes)  # (-1 fails on 0 classes)
        nll = torch.nn.functional.nll_loss(
            rows, index.reshape(-1).long(), reduction="none", ignore_index=_NEVER_AN_INDEX
        )
        return -nll.view_as(index)
    # Compiled: log p[t] = x[t] - logsumexp(x) with the log_softmax's logsumexp, so that the
    # backward is one pass of (one-hot - softmax) with no sum over the row of the pick's
    # gradient; and nll_loss's own `[N, C, d1, ...]` layout, whose indexing Inductor
    # simplifies over unbacked sizes where flattening to rows needs a division.
    logits = low.tensor(sub(source.args[0]))
    if "..." in dims:  # a rank unknown here: rows, as eagerly
        rows = logits.reshape(index.numel(), classes)
        picked = -torch.nn.functional.nll_loss(
            rows, index.reshape(-1).long(), reduction="none", ignore_index=_NEVER_AN_INDEX
        ).view_as(index)
    else:
        layout = logits.movedim(-1, 1) if len(dims) > 2 else logits
        picked = -torch.nn.functional.nll_loss(
            layout, index.long(), reduction="none", ignore_index=_NEVER_AN_INDEX
        )
    return picked - low.logsumexp(logits, -1)


# ---- the mean of log-probabilities: mean(x) - logsumexp(x) -------------------------------


@pattern("mean")
def _mean_log_probability(low: _Lowering, node: Node, sub: Sub) -> Value | None:
    """mean(log_softmax(x, dim=C), dim=C) under torch.compile, C last: `mean(x) - lse(x)` with
    the logsumexp the log_softmax shares, so the mean joins the pass over `x` that finds the
    maximum instead of a pass of its own, forward and backward (label smoothing)."""
    if not low.compiled or len(node.args) != 1 or node.attrs.get("keepdim"):
        return None
    source = _node(low, node.args[0])
    if source.op != "log_softmax" or tuple(node.attrs.get("dim") or ()) != (source.attrs["dim"],):
        return None
    if low.axis(low.dims_of(node), source.attrs["dim"]) != -1:
        return None
    x = sub(source.args[0])
    if not isinstance(x, fx.Proxy):
        return None
    x = low.tensor(low.floating(x, low.kind(source.args[0])))
    return x.mean(-1) - low.logsumexp(x, -1)


# ---- Huber: min instead of where ------------------------------------------------------------


@pattern("where")
def _huber_branches(low: _Lowering, node: Node, sub: Sub) -> Value | None:
    """where(|r| < d, 0.5·square(r), d·(|r| - 0.5·d)), operands in either order."""
    if node.type.kind != "float":
        return None
    condition, quadratic, linear = (_node(low, a) for a in node.args)
    if condition.op not in ("lt", "le"):
        return None
    size_id, delta_id = condition.args
    r_id = _unary_arg(low, size_id, "abs")
    if r_id is None or low.kind(r_id) != "float" or low.kind(delta_id) not in ("float", "int"):
        return None
    squared = _scaled(low, quadratic.id, 0.5)
    squared_arg = None if squared is None else _unary_arg(low, squared, "square")
    if squared_arg is None or not _same(low, squared_arg, r_id):
        return None
    if linear.op != "mul":
        return None
    for d, rest in (linear.args, linear.args[::-1]):
        if not _same(low, d, delta_id):
            continue
        excess = _node(low, rest)
        if excess.op != "sub" or not _same(low, excess.args[0], size_id):
            continue
        half = _scaled(low, excess.args[1], 0.5)
        if half is not None and _same(low, half, delta_id):
            # |r| is the spec's own node, so an `abs(r)` elsewhere (an L1 term) is shared.
            delta = low.floating(sub(delta_id), low.kind(delta_id))
            return huber_without_where(low.tensor(sub(size_id)), delta)
    return None
