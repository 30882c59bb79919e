"""The op table: the single source of truth for every built-in op. Torch-free."""

from lossdsl.ops.op import REQUIRED, Arg, Op
from lossdsl.ops.table import (
    BINARY_OPERATORS,
    CALLABLE_NAMES,
    ELEMENTWISE_FORM,
    OPERATOR_ONLY,
    OPS,
    RESERVED,
    UNARY_OPERATORS,
    VALUE_OPS,
)

__all__ = [
    "Arg",
    "Op",
    "REQUIRED",
    "OPS",
    "OPERATOR_ONLY",
    "BINARY_OPERATORS",
    "UNARY_OPERATORS",
    "ELEMENTWISE_FORM",
    "RESERVED",
    "CALLABLE_NAMES",
    "VALUE_OPS",
]
