"""`LossModule`: the runtime contract around a lowered (and maybe compiled) fx graph."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from lossdsl.backend.compiled import CompiledGraph, contracted
from lossdsl.backend.lowering import lower, readable_code
from lossdsl.backend.metadata import spec_metadata
from lossdsl.ir import SpecIR
from lossdsl.runtime.core import InputError, LossRuntime

# (static choices, derived inputs to compute) -> the checked IR of that variant
Rebuild = Callable[[dict[str, str], frozenset[str]], SpecIR]


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
        chunk: int | str | None = None,
    ):
        nn.Module.__init__(self)
        self._rebuild = rebuild
        self._compile_options = (compile, backend, mode)
        self._chunk = _checked_chunk(chunk)
        self._variants: dict[tuple, tuple] = {}
        declared = {c.name: c for c in ir.choices}
        choices = {k: v for k, v in (params or {}).items() if k in declared}
        for name, value in choices.items():
            _check_choice(name, value, declared[name].choices)
        if any(declared[name].value != value for name, value in choices.items()):
            every_choice = {**{c.name: c.value for c in ir.choices}, **choices}
            ir = rebuild(every_choice, frozenset(ir.computed))
        self._install(ir)
        if self._chunk is not None and ir.derivations.reads:
            # E205 at load: the variant that derives everything is the one with most to slice
            every = frozenset(ir.derivations.reads)
            self._sliced(rebuild(self.choices, every), required=True)
        self._init_runtime({k: v for k, v in (params or {}).items() if k not in choices})

    def _install(self, ir: SpecIR) -> None:
        """Use the graph of this IR's variant (static choices, derived inputs computed),
        built once and kept: calls that alternate variants do not rebuild or recompile."""
        key = (tuple(sorted((c.name, c.value) for c in ir.choices)), frozenset(ir.computed))
        if key not in self._variants:
            compile, backend, mode = self._compile_options
            graph_module = lower(ir, compiled=compile)
            metadata = spec_metadata(ir)
            # `forward`, not the module: a GraphModule's call prints its traceback to stderr
            # on any error, and errors here become InputErrors.
            graph: Any = graph_module.forward
            sliced = self._sliced(ir) if self._chunk is not None else None
            if sliced is not None:
                graph = sliced
            elif compile:
                input_dims = [spec["dims"] for spec in metadata["inputs"]]
                graph = CompiledGraph(
                    graph_module, input_dims, backend=backend, mode=mode, backed=contracted(ir)
                )
            self._variants[key] = (ir, metadata, graph_module, graph)
        self.ir, self.SPEC, self.graph_module, graph = self._variants[key]
        # Not a submodule: the graph holds no state, and `graph_module` is registered.
        self.__dict__["_graph"] = graph

    def forward(
        self, step: Any = 0, params: dict[str, Any] | None = None, **inputs: torch.Tensor
    ) -> Any:
        derivations = self.ir.derivations
        if derivations.reads:
            computed = derivations.computed_for(inputs)
            if computed != frozenset(self.ir.computed):
                self._install(self._rebuild(self.choices, computed))
        if derivations.reads or derivations.unchosen:
            self._check_variant_inputs(inputs)
        return super().forward(step, params, **inputs)

    def _check_variant_inputs(self, inputs: dict[str, Any]) -> None:
        """Derived inputs: say which inputs a call leaves unused, or what else it could pass."""
        from lossdsl.runtime.core import InputError

        derivations = self.ir.derivations
        used = {i["name"] for i in self.SPEC["inputs"]}
        unused = sorted(n for n in inputs if n in derivations.inputs and n not in used)
        if unused:
            passed = sorted(n for n in derivations.reads if n in inputs and n not in unused)
            if not passed:  # read by none of this variant's values: a branch not chosen
                choices = ", ".join(f'{k}="{v}"' for k, v in self.choices.items())
                raise InputError(
                    f"{self.SPEC['name']} does not read {_names(unused)}"
                    + (f" with {choices}" if choices else "")
                )
            raise InputError(
                f"{self.SPEC['name']} does not read {_names(unused)} when "
                f"{_names(passed) or 'these inputs'} {'is' if len(passed) == 1 else 'are'} "
                "passed; pass one or the other"
            )
        missing = [
            i["name"]
            for i in self.SPEC["inputs"]
            if i["name"] not in inputs and i["default"] is None
        ]
        if missing:
            instead = derivations.alternatives(missing)
            raise InputError(
                f"missing input{'s' if len(missing) > 1 else ''} {_names(missing)} of "
                f"{self.SPEC['name']}"
                + (f" (or pass {_names(instead, 'or')} instead)" if instead else "")
            )

    def _sliced(self, ir: SpecIR, required: bool = False) -> Any:
        """The graph that runs in slices of rows, or None where the spec cannot be sliced and
        `chunk="auto"` (a warning says why); E205 with `chunk=N`. A variant with nothing to
        slice (log-probs passed, not logits) runs as it is when another variant has some."""
        from lossdsl.api import LossSpecWarning
        from lossdsl.backend.slicing import SlicedGraph
        from lossdsl.diagnostics import LossSpecError
        from lossdsl.passes.slicing import has_wide_inputs, means_as_sums, plan_slices

        prepared = means_as_sums(ir)
        if not required and ir.derivations.reads and not has_wide_inputs(prepared):
            return None
        plan, problems = plan_slices(prepared)
        if problems:
            if self._chunk != "auto":
                raise LossSpecError(problems, dict(ir.sources))
            rendered = problems[0].render(ir.sources.get(problems[0].span.file))
            warnings.warn(f"chunk='auto' runs unsliced: {rendered}", LossSpecWarning, stacklevel=4)
            return None
        assert plan is not None
        compile, backend, mode = self._compile_options
        return SlicedGraph(prepared, plan, self._chunk, compile, backend, mode)

    @property
    def choices(self) -> dict[str, str]:
        return {name: c["value"] for name, c in self.SPEC["choices"].items()}

    def _set_choice(self, name: str, value: Any) -> None:
        spec = self.SPEC["choices"][name]
        if value == spec["value"]:
            return
        _check_choice(name, value, spec["choices"])
        floats = self._floats  # a rebuild keeps the numeric params as they are
        self._install(self._rebuild({**self.choices, name: value}, frozenset(self.ir.computed)))
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


def _names(names: list[str], joint: str = "and") -> str:
    quoted = [f"`{n}`" for n in names]
    if len(quoted) < 2:
        return "".join(quoted)
    return ", ".join(quoted[:-1]) + f" {joint} " + quoted[-1]


def _checked_chunk(chunk: int | str | None) -> int | str | None:
    if chunk is None or chunk == "auto":
        return chunk
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f'`chunk` takes a number of rows (1 or more) or "auto", got {chunk!r}')
    return chunk
