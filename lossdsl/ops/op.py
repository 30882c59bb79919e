"""What an op is: one record holding every fact about it. Torch-free."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lossdsl.ir.types import Dim, Kind, TensorType
from lossdsl.ops.facts import Facts

REQUIRED = object()  # an argument the caller must give

# Argument kinds: a TENSOR becomes an IR edge; everything else is a static attribute.
TENSOR = "tensor"
MASK = "mask"  # a tensor that must be bool (`where=`, the condition of `where`)
DIM = "dim"  # one dim name
DIMS = "dims"  # a dim name or a list of them; None means all
FLAG = "flag"  # true / false
NUMBER = "number"  # a numeric literal
NUMBERS = "numbers"  # a list of numeric literals
SIZE = "size"  # a dim name or an integer literal
NEW_DIM = "new dim"  # a dim name no input declares, introduced by the call (`rename`)


@dataclass(frozen=True)
class Arg:
    name: str
    kind: str = TENSOR
    default: Any = REQUIRED  # REQUIRED, None (optional, absent), or a value

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


ShapeRule = Callable[[list[TensorType], dict[str, Any]], tuple[Dim, ...]]
DtypeRule = Callable[[list[TensorType], dict[str, Any]], Kind]


@dataclass(frozen=True)
class Op:
    name: str
    args: tuple[Arg, ...]
    shape: ShapeRule
    dtype: DtypeRule
    lowering: str  # a torch function's dotted name, or the name of a lowering in the backend
    group: str  # elementwise | reduction | distribution | shape | schedule | logic | structural
    doc: str = ""
    # The op on plain floats (constant folding, schedule values); None where it reduces
    # over tensors. Schedules take `step` first.
    scalar: Callable[..., float] | None = None
    # Facts for the stability analysis (interval rule, domain and poles, curvature,
    # monotonicity, differentiability, gradient bound) live here too, one record per op.
    facts: Facts = field(default_factory=Facts)
    # Slicing (passes/slicing.py). A reduction whose partial results over disjoint slices of
    # rows combine into the whole result names how ("sum", "mean", "max", "min",
    # "logsumexp"); an op that needs every value along its `dim` (every dim, when `dim` is
    # omitted) at once, such as softmax or var, `mixes` them: its dims cannot be sliced.
    accumulate: str | None = None
    mixes: bool = False

    def tensor_args(self) -> tuple[Arg, ...]:
        return tuple(a for a in self.args if a.kind in (TENSOR, MASK))

    def signature(self) -> str:
        parts = []
        for arg in self.args:
            if arg.required:
                parts.append(arg.name)
            else:
                parts.append(f"{arg.name}={'…' if arg.default is None else arg.default}")
        return f"{self.name}({', '.join(parts)})"
