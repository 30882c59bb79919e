"""`lossdsl compile SPEC --export OUT.pt2`: a `torch.export` program of the loss graph.

One shared `torch.export.Dim` per named dim, so every size of every named dim works;
the rank of `...` and the compute dtype are fixed at export (`leading_rank`, `dtype`).
The spec's description rides along in the archive, so `lossdsl.load("OUT.pt2")` gives the
full run-time contract, and plain `torch.export.load` gives the graph.

A spec that adapts is exported as a module that holds its learned params (parameters) and
its states (the buffer `state_values`), and takes the module's mode as a last argument, a
0-d bool tensor: the program writes the states' new values into its buffer (a buffer
mutation of the exported program; the same values in eval mode), so the program alone
carries the states from call to call.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.export import Dim

from lossdsl.backend.lowering import lower
from lossdsl.backend.metadata import spec_metadata
from lossdsl.ir import SpecIR
from lossdsl.runtime.core import LossRuntime

SPEC_FILE = "lossdsl_spec.json"
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def export_program(ir: SpecIR, path: Path, dtype: str = "f32", leading_rank: int = 1) -> None:
    spec = spec_metadata(ir)
    spec["export"] = {"dtype": dtype, "leading_rank": leading_rank}
    args, dynamic = _example_arguments(spec, DTYPES[dtype], leading_rank)
    graph: nn.Module = lower(ir)
    shapes: Any = tuple(dynamic)
    if spec.get("states") or spec.get("learned"):
        graph = _Adaptive(graph, spec)
        if spec.get("states"):
            args.append(torch.tensor(True))
            dynamic.append(None)
        shapes = {"args": tuple(dynamic)}  # `forward(*args)`
    program = torch.export.export(graph, tuple(args), dynamic_shapes=shapes)
    torch.export.save(program, str(path), extra_files={SPEC_FILE: json.dumps(spec)})


class _Adaptive(nn.Module):
    """The loss graph with its learned params and states inside: `(*inputs, step[, params]
    [, training])`; the states' new values go into the `state_values` buffer."""

    def __init__(self, graph: nn.Module, spec: dict[str, Any]):
        super().__init__()
        self.graph = graph
        self.names = [p["name"] for p in spec.get("learned", [])]
        if self.names:
            self.learned = nn.ParameterDict(
                {p["name"]: nn.Parameter(torch.tensor(float(p["init"]))) for p in spec["learned"]}
            )
        self.stateful = bool(spec.get("states"))
        if self.stateful:
            nan = torch.full((len(spec["states"]),), math.nan, dtype=torch.float64)
            self.register_buffer("state_values", nan)

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        learned = [self.learned[name] for name in self.names]
        if not self.stateful:
            return tuple(self.graph(*args, *learned))
        *given, training = args
        *out, new_states = self.graph(*given, *learned, self.state_values, training)
        self.state_values.copy_(new_states)
        return tuple(out)


def _example_arguments(
    spec: dict[str, Any], dtype: torch.dtype, leading_rank: int
) -> tuple[list[Any], list[Any]]:
    # Distinct example sizes keep export from guessing that two dims are equal.
    named = sorted({d for i in spec["inputs"] for d in i["dims"] if isinstance(d, str)} - {"..."})
    sizes = {name: 3 + index for index, name in enumerate(named)}
    lead = [3 + len(named) + k for k in range(leading_rank)]
    dims = {name: Dim(name, min=2) for name in named}
    lead_dims = [Dim(f"lead{k}", min=2) for k in range(leading_rank)]
    args: list[Any] = []
    dynamic: list[Any] = []
    for item in spec["inputs"]:
        shape: list[int] = []
        marks: dict[int, Any] = {}
        for dim in item["dims"]:
            if dim == "...":
                for k in range(leading_rank):
                    marks[len(shape)] = lead_dims[k]
                    shape.append(lead[k])
            elif isinstance(dim, int):
                shape.append(dim)
            else:
                marks[len(shape)] = dims[dim]
                shape.append(sizes[dim])
        if item["dtype"] == "int":
            args.append(torch.zeros(shape, dtype=torch.int64))
        elif item["dtype"] == "bool":
            args.append(torch.ones(shape, dtype=torch.bool))
        else:
            args.append(torch.randn(shape, dtype=dtype))
        dynamic.append(marks or None)
    args.append(torch.zeros((), dtype=dtype))
    dynamic.append(None)
    if spec["params"]:
        args.append(torch.zeros(len(spec["params"]), dtype=torch.float64))
        dynamic.append(None)
    return args, dynamic


class ExportedLoss(LossRuntime, nn.Module):
    """A loss loaded from a `.pt2`: the same call contract as `lossdsl.load` of the spec."""

    def __init__(self, path: Path, params: dict[str, Any] | None = None):
        nn.Module.__init__(self)
        extra = {SPEC_FILE: ""}
        program = torch.export.load(str(path), extra_files=extra)
        self.SPEC = json.loads(extra[SPEC_FILE])
        # A submodule: it holds the learned params and states, if any (state_dict, .to()).
        self.program = program.module()
        self.__dict__["_graph"] = self.program
        self._dtype = DTYPES[self.SPEC["export"]["dtype"]]
        self._init_runtime(params, adaptive=False)

    def _compute_dtype(self, tensors: list[torch.Tensor]) -> torch.dtype:
        return self._dtype  # fixed when the program was exported

    def _adaptive_args(self, device: torch.device) -> list[torch.Tensor]:
        """The program holds its learned params and states: it takes only the mode."""
        return [self._mode(device)] if self.SPEC.get("states") else []

    def train(self, mode: bool = True) -> ExportedLoss:
        """The mode is this module's to keep (the program takes it as an argument; an
        exported program cannot be put in a mode itself)."""
        self.training = mode
        return self

    def reset_state(self) -> None:
        if self.SPEC.get("states"):
            with torch.no_grad():
                self.program.state_values.fill_(math.nan)


def load_exported(path: Path, params: dict[str, Any] | None = None) -> ExportedLoss:
    return ExportedLoss(path, params)
