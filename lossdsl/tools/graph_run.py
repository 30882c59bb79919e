"""Running a spec's lowered graph node by node, for the tools that look inside a loss.

`lossdsl.load` runs the fx graph as one call; `analyze` and `landscape` also need what each
IR node computed, its gradient, and the terms before they are detached. This module is the
one place that knows how the backend lays out the graph (`backend/lowering.py`): which fx
node computes which IR node, and the graph's calling convention
`(*inputs, step, params, *learned, states, training) -> (loss, *terms, *weights, *metrics,
…)`. A spec that adapts is run as its first training-mode call: learned params at their
INIT, every state starting at its INIT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from lossdsl.ir import SpecIR
from lossdsl.tools import ToolError

FLOAT_DTYPES = {
    "f64": torch.float64,
    "f32": torch.float32,
    "bf16": torch.bfloat16,
    "f16": torch.float16,
}


@dataclass
class Traced:
    """The lowered graph of a spec, with the IR nodes each fx node computes."""

    ir: SpecIR
    graph: fx.GraphModule
    ir_nodes: dict[fx.Node, list[int]]  # in IR order; the first is the one that computes it


def trace(ir: SpecIR) -> Traced:
    from lossdsl.backend.lowering import _Lowering

    lowering = _Lowering(ir)
    graph = lowering.run()
    ir_nodes: dict[fx.Node, list[int]] = {}
    for table in (lowering.values, lowering.detached):
        for node_id, value in sorted(table.items()):
            if isinstance(value, fx.Proxy):
                ir_nodes.setdefault(value.node, [])
                if node_id not in ir_nodes[value.node]:
                    ir_nodes[value.node].append(node_id)
    return Traced(ir, graph, ir_nodes)


def bind(
    ir: SpecIR, given: dict[str, torch.Tensor], step: float, params: dict[str, float]
) -> list[Any]:
    """The graph's arguments for the inputs `given` (optional ones left out get their
    default), `step`, and `params` over the declared defaults."""
    floats = [t.dtype for t in given.values() if t.is_floating_point()]
    dtype = torch.float64 if torch.float64 in floats else torch.float32
    sizes, leading = _sizes(ir, given)
    arguments: list[Any] = []
    for spec in ir.inputs:
        tensor = given.get(spec.name)
        if tensor is None:
            if spec.default is None:
                raise ToolError(f"input `{spec.name}` is missing")
            shape = [s for d in spec.dims for s in (leading if d == "..." else [_size(d, sizes)])]
            kind = {"bool": torch.bool, "int": torch.int64}.get(spec.dtype, dtype)
            tensor = torch.full((), spec.default, dtype=kind).expand(shape)
        elif spec.dtype == "bool" and tensor.dtype != torch.bool:
            tensor = tensor != 0
        arguments.append(tensor if spec.grad else tensor.detach())
    arguments.append(torch.tensor(float(step), dtype=dtype))
    if ir.params:
        values = [math.nan if p.default is None else float(p.default) for p in ir.params]
        for name, value in params.items():
            index = next((i for i, p in enumerate(ir.params) if p.name == name), None)
            if index is None:
                raise ToolError(f"`{name}` is not a param of {ir.name}")
            values[index] = float(value)
        arguments.append(torch.tensor(values, dtype=torch.float64))
    arguments += [torch.tensor(p.init, dtype=torch.float64) for p in ir.learned]
    if ir.states:  # NaN: each state starts at its INIT; a training-mode call
        arguments += [torch.full((len(ir.states),), math.nan, dtype=torch.float64)]
        arguments.append(torch.tensor(True))
    return arguments


def _sizes(ir: SpecIR, given: dict[str, torch.Tensor]) -> tuple[dict[str, int], list[int]]:
    sizes: dict[str, int] = {}
    leading: list[int] = []
    for spec in ir.inputs:
        tensor = given.get(spec.name)
        if tensor is None:
            continue
        explicit = [d for d in spec.dims if d != "..."]
        shape = list(tensor.shape)
        if spec.dims and spec.dims[0] == "...":
            leading = shape[: len(shape) - len(explicit)]
        for dim, size in zip(explicit, shape[len(shape) - len(explicit) :], strict=True):
            if isinstance(dim, str):
                sizes.setdefault(dim, size)
    return sizes, leading


def _size(dim: str | int, sizes: dict[str, int]) -> int:
    if isinstance(dim, int):
        return dim
    if dim not in sizes:
        raise ToolError(f"dim {dim} is bound by no input given")
    return sizes[dim]


def split_outputs(ir: SpecIR, outputs: tuple[torch.Tensor, ...]) -> dict[str, Any]:
    """The graph's outputs by role: the loss, and terms, weights and metrics by name."""
    n = len(ir.terms)
    names = [t.name for t in ir.terms]
    end = 1 + 2 * n + len(ir.metrics)  # then what a spec that adapts reports
    return {
        "loss": outputs[0],
        "terms": dict(zip(names, outputs[1 : 1 + n], strict=True)),
        "weights": dict(zip(names, outputs[1 + n : 1 + 2 * n], strict=True)),
        "metrics": dict(zip([m.name for m in ir.metrics], outputs[1 + 2 * n : end], strict=True)),
    }
