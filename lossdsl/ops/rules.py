"""Shape and dtype rules the op table is built from."""

from __future__ import annotations

from typing import Any

from lossdsl.ir.types import (
    ELLIPSIS,
    DimError,
    DtypeError,
    Kind,
    ShapeError,
    TensorType,
    arithmetic_kind,
    broadcast,
    promote,
    reduce_dims,
)

Types = list[TensorType]
Attrs = dict[str, Any]

# ---- shapes --------------------------------------------------------------------


def same_as_broadcast(types: Types, attrs: Attrs) -> tuple:
    return broadcast(*(t.dims for t in types))


def scalar(types: Types, attrs: Attrs) -> tuple:
    return ()


def reduced(types: Types, attrs: Attrs) -> tuple:
    dims = broadcast(*(t.dims for t in types))  # the value and its `where=` mask
    return reduce_dims(dims, attrs.get("dim"), bool(attrs.get("keepdim", False)))


def along_one_dim(types: Types, attrs: Attrs) -> tuple:
    """softmax / log_softmax: same dims, and the dim must be one of them."""
    reduce_dims(types[0].dims, (attrs["dim"],), False)
    return types[0].dims


def without_dim(types: Types, attrs: Attrs) -> tuple:
    return reduce_dims(types[0].dims, (attrs["dim"],), False)


def gathered(types: Types, attrs: Attrs) -> tuple:
    source, index = types
    rest = reduce_dims(source.dims, (attrs["dim"],), False)
    broadcast(rest, index.dims)  # the index has the dims of the source without `dim`
    return index.dims


def one_hot_dims(types: Types, attrs: Attrs) -> tuple:
    return (*types[0].dims, attrs["n"])


def contracted(types: Types, attrs: Attrs) -> tuple:
    """matmul(a, b, dim=K): a's dims without K, then the dims of b that a lacks, without K;
    named dims the two share are batch dims (equal by name)."""
    a, b = (t.dims for t in types)
    k = attrs["dim"]
    for side, dims in (("a", a), ("b", b)):
        if k not in dims:
            raise ShapeError(f"the contracted dim {k} is not a dim of `{side}` {_shown(dims)}")
    if ELLIPSIS in b and ELLIPSIS not in a:
        raise ShapeError(
            f"`b` {_shown(b)} has leading `...` dims that `a` {_shown(a)} lacks; "
            "put the operand with `...` first"
        )
    kept = tuple(d for d in a if d != k)
    extra = tuple(d for d in b if d != k and (isinstance(d, int) or d not in a))
    return (*kept, *extra)


def renamed(types: Types, attrs: Attrs) -> tuple:
    """rename(x, dim=N, to=K): x's dims with N called K, in place."""
    dims, old, new = types[0].dims, attrs["dim"], attrs["to"]
    if old not in dims:
        raise DimError(f"{old} is not a dim of {_shown(dims)}")
    if new in dims:
        raise DimError(f"{_shown(dims)} already has a dim {new}")
    return tuple(new if d == old else d for d in dims)


def positions(types: Types, attrs: Attrs) -> tuple:
    return (attrs["dim"],)


def normalized(types: Types, attrs: Attrs) -> tuple:
    """The dims of x; the dims normalised over must be among them."""
    reduce_dims(types[0].dims, attrs.get("dim"), False)
    return types[0].dims


def _shown(dims: tuple) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


# ---- dtypes --------------------------------------------------------------------


def floating(types: Types, attrs: Attrs) -> Kind:
    return "float"


def arithmetic(types: Types, attrs: Attrs) -> Kind:
    return arithmetic_kind(*types)


def keeps_kind(types: Types, attrs: Attrs) -> Kind:
    """abs, sign, floor, clamp, min/max: ints stay ints; bools become numbers."""
    kind = promote(*types)
    return "float" if kind == "bool" else kind


def same_kind(types: Types, attrs: Attrs) -> Kind:
    """rename: the values as they are, bools included."""
    return types[0].kind


def boolean(types: Types, attrs: Attrs) -> Kind:
    return "bool"


def logical(types: Types, attrs: Attrs) -> Kind:
    for index, t in enumerate(types):
        if t.kind != "bool":
            raise DtypeError(
                f"`{attrs.get('_op', 'and/or/not')}` needs bool operands, got {t}", arg=index
            )
    return "bool"


def integer(types: Types, attrs: Attrs) -> Kind:
    return "int"


def where_kind(types: Types, attrs: Attrs) -> Kind:
    condition, a, b = types
    if condition.kind != "bool":
        raise DtypeError(f"the condition of where(c, a, b) must be bool, got {condition}", arg=0)
    return promote(a, b)


def sum_kind(types: Types, attrs: Attrs) -> Kind:
    return "int" if types[0].kind == "int" else "float"


def extreme_kind(types: Types, attrs: Attrs) -> Kind:
    return "float" if types[0].kind == "bool" else types[0].kind


def index_into(types: Types, attrs: Attrs) -> Kind:
    if types[1].kind != "int":
        raise DtypeError(f"an index must be int, got {types[1]}", arg=1)
    return "float"


def int_index(types: Types, attrs: Attrs) -> Kind:
    if types[0].kind != "int":
        raise DtypeError(f"an index must be int, got {types[0]}", arg=0)
    return "float"


def counted(types: Types, attrs: Attrs) -> Kind:
    if types[0].kind != "bool":
        raise DtypeError(f"count(m) counts true elements of a bool tensor, got {types[0]}", arg=0)
    return "float"


def reduced_one(types: Types, attrs: Attrs) -> tuple:
    return reduce_dims(types[0].dims, (attrs["dim"],), bool(attrs.get("keepdim", False)))
