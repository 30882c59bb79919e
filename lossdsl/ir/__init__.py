"""Stage 2: the IR (pydantic) and building it from the AST. Torch-free."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lossdsl.ir.model import (
    ChoiceSpec,
    InputSpec,
    LearnedSpec,
    NamedValue,
    Node,
    ParamSpec,
    RangeSpec,
    SpecIR,
    StateSpec,
)
from lossdsl.ir.types import TensorType

if TYPE_CHECKING:
    from lossdsl.diagnostics import Diagnostic


def build(*args: Any, **kwargs: Any) -> tuple[SpecIR | None, list[Diagnostic]]:
    """Build the IR from an AST (see `lossdsl.ir.builder.build`)."""
    # Imported here: the backend reads IR models without pulling in the parser.
    from lossdsl.ir.builder import build as build_ir

    return build_ir(*args, **kwargs)


__all__ = [
    "build",
    "SpecIR",
    "Node",
    "InputSpec",
    "ParamSpec",
    "ChoiceSpec",
    "NamedValue",
    "RangeSpec",
    "StateSpec",
    "LearnedSpec",
    "TensorType",
]
