"""Tensor types of the IR: a dtype kind and named dims, and PyTorch's broadcasting on names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["float", "int", "bool"]
Dim = str | int  # a dim name, a literal size, or "..." (leading dims)
ELLIPSIS = "..."


@dataclass(frozen=True)
class TensorType:
    kind: Kind
    dims: tuple[Dim, ...] = ()
    weak: bool = (
        False  # a literal: takes the kind of what it meets (`where(m, target, 0)` stays int)
    )

    def __str__(self) -> str:
        return f"{self.kind}[{', '.join(str(d) for d in self.dims)}]"

    @property
    def is_scalar(self) -> bool:
        return not self.dims or all(d == 1 for d in self.dims)


class ShapeError(Exception):
    """Shapes that do not broadcast (E200)."""


class DimError(Exception):
    """An unknown dim, or a dim the argument does not have (E104)."""


class DtypeError(Exception):
    """A dtype misuse (E201); `arg` is the index of the offending argument, when one is."""

    def __init__(self, message: str, arg: int | None = None):
        super().__init__(message)
        self.arg = arg


def broadcast(*dims_list: tuple[Dim, ...]) -> tuple[Dim, ...]:
    result: tuple[Dim, ...] = ()
    for dims in dims_list:
        result = _broadcast_two(result, dims)
    return result


def _broadcast_two(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...]:
    a_lead, a_body = _split_ellipsis(a)
    b_lead, b_body = _split_ellipsis(b)
    out: list[Dim] = []
    for i in range(1, max(len(a_body), len(b_body)) + 1):
        x = a_body[-i] if i <= len(a_body) else None
        y = b_body[-i] if i <= len(b_body) else None
        if x is None or (a_lead and i > len(a_body)):
            out.append(y if y is not None else 1)
        elif y is None:
            out.append(x)
        else:
            out.append(_meet(x, y, a, b))
    out.reverse()
    if a_lead or b_lead:
        # Dims beyond the explicit ones of a `...` operand fall inside its `...`.
        shortest = min(len(a_body) if a_lead else len(out), len(b_body) if b_lead else len(out))
        return (ELLIPSIS, *out[len(out) - shortest :])
    return tuple(out)


def _split_ellipsis(dims: tuple[Dim, ...]) -> tuple[bool, tuple[Dim, ...]]:
    if dims and dims[0] == ELLIPSIS:
        return True, dims[1:]
    return False, dims


def _meet(x: Dim, y: Dim, a: tuple[Dim, ...], b: tuple[Dim, ...]) -> Dim:
    if x == y or y == 1:
        return x
    if x == 1:
        return y
    raise ShapeError(f"dim {x} meets dim {y}")


def reduce_dims(
    dims: tuple[Dim, ...], axes: tuple[str, ...] | None, keepdim: bool
) -> tuple[Dim, ...]:
    """The dims left by a reduction over `axes` (None: all of them)."""
    if axes is None:
        return tuple(1 for d in dims if d != ELLIPSIS) if keepdim and ELLIPSIS not in dims else ()
    for axis in axes:
        if axis not in dims:
            raise DimError(f"dim {axis} is not among {format_dims(dims)}")
    if keepdim:
        return tuple(1 if d in axes else d for d in dims)
    return tuple(d for d in dims if d not in axes)


def format_dims(dims: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def arithmetic_kind(*types: TensorType) -> Kind:
    """`+ - * ^`: ints stay ints, everything else (bool included, true = 1) is float."""
    kinds = {t.kind for t in types if not t.weak} or {t.kind for t in types}
    weak_kinds = {t.kind for t in types if t.weak}
    if kinds == {"int"} and weak_kinds <= {"int"}:
        return "int"
    return "float"


def promote(*types: TensorType) -> Kind:
    """The kind of an arithmetic result: float beats int beats bool; literals are weak."""
    strong = [t.kind for t in types if not t.weak] or [t.kind for t in types]
    weak = [t.kind for t in types if t.weak]
    kinds = set(strong)
    if "float" in kinds or ("float" in weak):
        return "float"
    if "int" in kinds:
        return "int"
    if kinds == {"bool"} and "int" in weak:
        return "int"
    return "bool" if kinds == {"bool"} else "int"
