"""`LossModule`: the runtime contract around a lowered (and maybe compiled) fx graph."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from lossdsl.backend.compiled import CompiledGraph
from lossdsl.backend.lowering import lower, readable_code
from lossdsl.backend.metadata import spec_metadata
from lossdsl.ir import SpecIR
from lossdsl.runtime.core import InputError, LossRuntime

Rebuild = Callable[[dict[str, str]], SpecIR]


class LossModule(LossRuntime, nn.Module):
    """A compiled `.loss` spec. Call it with keyword inputs; it returns a `LossOutput`."""

    def __init__(
        self,
        ir: SpecIR,
        rebuild: Rebuild,
        params: dict[str, Any] | None = None,
        compile: bool = False,
        backend: str = "inductor",
        mode: str | None = None,
    ):
        nn.Module.__init__(self)
        self._rebuild = rebuild
        self._compile_options = (compile, backend, mode)
        declared = {c.name: c for c in ir.choices}
        choices = {k: v for k, v in (params or {}).items() if k in declared}
        for name, value in choices.items():
            _check_choice(name, value, declared[name].choices)
        if any(declared[name].value != value for name, value in choices.items()):
            ir = rebuild({**{c.name: c.value for c in ir.choices}, **choices})
        self._install(ir)
        self._init_runtime({k: v for k, v in (params or {}).items() if k not in choices})

    def _install(self, ir: SpecIR) -> None:
        self.ir = ir
        self.SPEC = spec_metadata(ir)
        compile, backend, mode = self._compile_options
        self.graph_module = lower(ir, compiled=compile)
        # `forward`, not the module: a GraphModule's call prints its traceback to stderr on
        # any error, and errors here become InputErrors. Not a submodule either: the graph
        # holds no state, and `graph_module` is registered.
        graph: Any = self.graph_module.forward
        if compile:
            input_dims = [spec["dims"] for spec in self.SPEC["inputs"]]
            graph = CompiledGraph(self.graph_module, input_dims, backend=backend, mode=mode)
        self.__dict__["_graph"] = graph

    @property
    def choices(self) -> dict[str, str]:
        return {name: c["value"] for name, c in self.SPEC["choices"].items()}

    def _set_choice(self, name: str, value: Any) -> None:
        spec = self.SPEC["choices"][name]
        if value == spec["value"]:
            return
        _check_choice(name, value, spec["choices"])
        floats = self._floats  # a rebuild keeps the numeric params as they are
        self._install(self._rebuild({**self.choices, name: value}))
        self._floats = floats

    @property
    def code(self) -> str:
        """The generated Python code of the loss graph."""
        return readable_code(self.graph_module)

    def extra_repr(self) -> str:
        return f"spec={self.SPEC['name']!r}, compiled={self._compile_options[0]}"


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    """A static choice is the caller's to make: a value not declared is an InputError."""
    if value not in allowed:
        raise InputError(f"`{name}` must be one of {', '.join(map(repr, allowed))}, got {value!r}")
