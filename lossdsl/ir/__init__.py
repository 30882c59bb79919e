"""Stage 2: the IR (pydantic) and building it from the AST. Torch-free."""

from lossdsl.ir.builder import build
from lossdsl.ir.model import ChoiceSpec, InputSpec, NamedValue, Node, ParamSpec, RangeSpec, SpecIR
from lossdsl.ir.types import TensorType

__all__ = [
    "build",
    "SpecIR",
    "Node",
    "InputSpec",
    "ParamSpec",
    "ChoiceSpec",
    "NamedValue",
    "RangeSpec",
    "TensorType",
]
