"""Lowerings of `matmul`, `index`, `norm` and `normalize` (their facts live in the op table).

`matmul` reads a bf16/f16 input as it is, with no float32 copy: a head `[V, H]` upcast per
call (or per slice) would cost more memory than the logits it makes. The product is computed
in the inputs' dtype (the hardware accumulates low-precision products in float32) and the
result is upcast to the compute dtype, where every later op reads it.
"""

from __future__ import annotations

import string

import torch
import torch.fx as fx

from lossdsl.backend.lowering import LOWERINGS, Value, _Lowering
from lossdsl.ir import Node
from lossdsl.ir.types import ELLIPSIS


def _operand(low: _Lowering, node_id: int) -> Value:
    """The operand as the caller passed it when it is a floating input (no upcast copy)."""
    node = low.ir.node(node_id)
    while node.op == "alias":
        node = low.ir.node(node.args[0])
    if node.op == "input" and node.type.kind == "float" and node.type.dims:
        return low.input_proxies[node.attrs["name"]]
    return low.tensor(low.floating(low.lower(node_id), node.type.kind))


def _equation(a: tuple, b: tuple, k: str, out: tuple) -> str:
    """An einsum equation over the named dims: a name is one letter in every operand, a
    literal dim a letter of its own, `...` stays `...`."""
    letters = iter(string.ascii_letters)
    named: dict[object, str] = {}

    def spell(dims: tuple, literals: dict[int, str]) -> str:
        text = ""
        for position, dim in enumerate(dims):
            if dim == ELLIPSIS:
                text += "..."
            elif isinstance(dim, int):
                text += literals.setdefault(position, next(letters))
            else:
                text += named.setdefault(dim, next(letters))
        return text

    a_literals: dict[int, str] = {}
    b_literals: dict[int, str] = {}
    left, right = spell(a, a_literals), spell(b, b_literals)
    out_letters = ""
    kept_a = [(i, d) for i, d in enumerate(a) if d != k]
    kept_b = [(i, d) for i, d in enumerate(b) if d != k and (isinstance(d, int) or d not in a)]
    for i, dim in kept_a:
        out_letters += (
            "..." if dim == ELLIPSIS else (a_literals[i] if isinstance(dim, int) else named[dim])
        )
    for i, dim in kept_b:
        out_letters += (
            "..." if dim == ELLIPSIS else (b_literals[i] if isinstance(dim, int) else named[dim])
        )
    assert len(out) == len(kept_a) + len(kept_b)
    return f"{left},{right}->{out_letters}"


def _matmul(low: _Lowering, node: Node, args: list[Value]) -> Value:
    a_id, b_id = node.args
    a_dims, b_dims = low.dims_of(node, 0), low.dims_of(node, 1)
    k = node.attrs["dim"]
    a, b = _operand(low, a_id), _operand(low, b_id)
    if isinstance(a, fx.Proxy) and isinstance(b, fx.Proxy) and a.node is not b.node:
        if _same_dtype(low, a_id, b_id):
            # Declared alike, passed alike or not (bf16 hidden states, a float32 head): the
            # wider of the two, which is a no-op when they match.
            wider = low.name(torch.promote_types(a.dtype, b.dtype), "operands_dtype")
            a, b = a.to(wider), b.to(wider)
        else:
            a, b = a.to(low.dtype), b.to(low.dtype)
    if (
        len(b_dims) == 2
        and a_dims
        and a_dims[-1] == k
        and b_dims[1] == k
        and b_dims[0] not in a_dims
    ):
        product = torch.nn.functional.linear(a, b)  # [..., K] · [V, K]ᵀ: a linear head
    elif (
        len(b_dims) == 2
        and a_dims
        and a_dims[-1] == k
        and b_dims[0] == k
        and b_dims[1] not in a_dims
    ):
        product = torch.matmul(a, b)
    else:
        product = torch.einsum(_equation(a_dims, b_dims, k, node.type.dims), a, b)
    return product.to(low.dtype)


def _same_dtype(low: _Lowering, a_id: int, b_id: int) -> bool:
    """Both operands are inputs declared with one exact dtype, or both are values already in
    the compute dtype: then they multiply as they are."""
    declared = []
    for node_id in (a_id, b_id):
        node = low.ir.node(node_id)
        while node.op == "alias":
            node = low.ir.node(node.args[0])
        declared.append(low.ir.input(node.attrs["name"]).dtype if node.op == "input" else None)
    return declared[0] == declared[1]


def _index(low: _Lowering, node: Node, args: list[Value]) -> Value:
    return low.positions(low.size_of(node.attrs["dim"]))


def _norm_axes(low: _Lowering, node: Node) -> dict:
    dims = low.dims_of(node)
    axes = node.attrs.get("dim")
    if axes is None:
        return {}
    return {"dim": tuple(low.axis(dims, d) for d in axes)}


def _norm(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x = low.tensor(low.floating(args[0], low.kind(node.args[0])))
    options = _norm_axes(low, node)
    if node.attrs.get("keepdim"):
        options["keepdim"] = True
        options.setdefault("dim", tuple(range(-len(low.dims_of(node)), 0)) or None)
    return torch.linalg.vector_norm(x, **options)


def _normalize(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x = low.tensor(low.floating(args[0], low.kind(node.args[0])))
    axes = _norm_axes(low, node).get("dim", tuple(range(-len(low.dims_of(node)), 0)))
    size = torch.linalg.vector_norm(x, dim=axes or None, keepdim=True)
    return x / torch.clamp(size, min=node.attrs.get("eps", 1e-12))


LOWERINGS["matmul"] = _matmul
LOWERINGS["index"] = _index
LOWERINGS["norm"] = _norm
LOWERINGS["normalize"] = _normalize
