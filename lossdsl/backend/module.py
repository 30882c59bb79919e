"""`LossModule`: the runtime contract around a lowered (and maybe compiled) fx graph."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lossdsl.backend.collectives import (
    Collectives,
    all_reduce,
    global_sums,
    lower_arguments,
    read_inputs,
    resolve,
    totals_signature,
)
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
        group: Any = None,
    ):
        nn.Module.__init__(self)
        self._rebuild = rebuild
        self._compile_options = (compile, backend, mode)
        self._chunk = _checked_chunk(chunk)
        self._group = group  # the data-parallel group of `global_sum` (None: the default one)
        self._variants: dict[tuple, tuple] = {}
        self._irs: dict[tuple, SpecIR] = {}
        self._step_totals: StepTotals | None = None  # the totals of the last `begin_step`
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
        self.__dict__["_state_layout"] = [s["name"] for s in self.SPEC.get("states", [])]

    def _variant_ir(self, choices: dict[str, str], computed: frozenset[str]) -> SpecIR:
        """The checked IR of a variant (static choices, derived inputs computed), built once."""
        key = (tuple(sorted(choices.items())), computed)
        if key not in self._irs:
            self._irs[key] = self._rebuild(choices, computed)
        return self._irs[key]

    def _install(self, ir: SpecIR) -> None:
        """Use the graph of this IR's variant (static choices, derived inputs computed) for the
        data-parallel group as it is now, stepped after `begin_step`; each is built once and
        kept: calls that alternate variants do not rebuild or recompile."""
        variant = _variant_key(ir)
        self._irs.setdefault(variant, ir)
        collectives = resolve(self._group)
        stepped = self._step_totals is not None and bool(global_sums(ir))
        key = (variant, collectives, stepped)
        if key not in self._variants:
            compile, backend, mode = self._compile_options
            graph_module = lower(ir, compiled=compile, collectives=collectives, stepped=stepped)
            metadata = spec_metadata(ir)
            # `forward`, not the module: a GraphModule's call prints its traceback to stderr
            # on any error, and errors here become InputErrors.
            graph: Any = graph_module.forward
            sliced = (
                self._sliced(ir, collectives=collectives, stepped=stepped)
                if self._chunk is not None
                else None
            )
            if sliced is not None:
                graph = sliced
            elif compile:
                arg_dims = [spec["dims"] for spec in metadata["inputs"]]
                if stepped:  # step, params, then the totals: their dims too
                    arg_dims += [[]] + ([[len(ir.params)]] if ir.params else [])
                    arg_dims += [[] for _ in ir.learned]  # learned params
                    arg_dims += [[len(ir.states)], []] if ir.states else []  # and the mode
                    arg_dims += [list(ir.node(t).type.dims) for t in global_sums(ir)]
                graph = CompiledGraph(
                    graph_module, arg_dims, backend=backend, mode=mode, backed=contracted(ir)
                )
            if stepped:
                graph = _WithTotals(graph, len(ir.inputs), self)
            self._variants[key] = (ir, metadata, graph_module, graph)
        self.ir, self.SPEC, self.graph_module, graph = self._variants[key]
        # Not a submodule: the graph holds no state, and `graph_module` is registered.
        self.__dict__["_graph"] = graph
        self.__dict__["_installed"] = key
        self._lay_out_states()

    def _lay_out_states(self) -> None:
        """Variants share the module's states by name: a variant whose states differ (an
        `ema` only one static choice has) finds each state it shares with the states held
        so far as it was, and starts the others."""
        held = self.__dict__.get("_state_layout")
        wanted = [s["name"] for s in self.SPEC.get("states", [])]
        if held is None or not wanted or wanted == held:
            return  # (before `_init_runtime`, which makes the buffer for this layout)
        old = self._buffers.get("state_values")
        like = old if old is not None else torch.empty(0, dtype=torch.float64)
        new = torch.full((len(wanted),), math.nan, dtype=like.dtype, device=like.device)
        for index, name in enumerate(wanted):
            if old is not None and name in held:
                new[index] = old[held.index(name)]
        if old is None:
            self.register_buffer("state_values", new)
        else:
            self.state_values = new
        self.__dict__["_state_layout"] = wanted

    def forward(
        self, step: Any = 0, params: dict[str, Any] | None = None, **inputs: torch.Tensor
    ) -> Any:
        self._use_variant_of(inputs)
        totals = self._step_totals
        if totals is not None and totals.signature != totals_signature(self.ir):
            raise InputError(
                f"{self.SPEC['name']}: this call's global_sum() arguments are not those the "
                f"totals of begin_step were summed for ({_describe_variant(totals.variant)}, "
                f"this call: {_describe_variant(_variant_key(self.ir))}): pass begin_step the "
                "inputs its global_sum() arguments read as the calls of the step pass them"
            )
        return super().forward(step, params, **inputs)

    def _use_variant_of(self, inputs: dict[str, Any], check: bool = True) -> None:
        """Install the graph for the derived inputs this call computes, the group as it is
        now and the step mode; check what the call passes against that variant (`check`)."""
        derivations = self.ir.derivations
        computed = (
            derivations.computed_for(inputs) if derivations.reads else frozenset(self.ir.computed)
        )
        ir = self._variant_ir(self.choices, computed)
        stepped = self._step_totals is not None and bool(global_sums(ir))
        if self.__dict__["_installed"] != (_variant_key(ir), resolve(self._group), stepped):
            self._install(ir)
        if (derivations.reads or derivations.unchosen) and check:
            self._check_variant_inputs(inputs)

    # ---- micro-batches of one optimizer step (LANGUAGE.md "Data parallel") -----------------

    def begin_step(self, micro_batches: Sequence[Mapping[str, Any]]) -> None:
        """Start an optimizer step of these micro-batches (the keyword dicts the calls will
        get, `step` and `params` included): every `global_sum` argument is evaluated on each,
        the sums are all-reduced once over the ranks, and the calls that follow use those
        totals until the next `begin_step` (or `end_step`)."""
        if isinstance(micro_batches, Mapping) or not isinstance(micro_batches, Sequence):
            raise InputError(
                "begin_step takes a list of micro-batches, each a dict of the keyword "
                f"arguments of one call; got {type(micro_batches).__name__}"
            )
        if not micro_batches:
            raise InputError("begin_step takes at least one micro-batch; got an empty list")
        self._step_totals = None  # a new step: the totals of the last one no longer apply
        sums: list[torch.Tensor] | None = None
        first: tuple[tuple, tuple[str, ...]] | None = None
        for index, call in enumerate(micro_batches):
            if not isinstance(call, Mapping):
                raise InputError(
                    f"begin_step: micro-batch {index} is a {type(call).__name__}, not a dict "
                    "of keyword arguments"
                )
            values, variant, signature = self._global_sum_arguments(dict(call))
            if first is not None and signature != first[1]:
                raise InputError(
                    f"begin_step: micro-batch {index} sums other global_sum() arguments than "
                    f"micro-batch 0 ({_describe_variant(variant)}, micro-batch 0: "
                    f"{_describe_variant(first[0])}): every micro-batch of a step passes the "
                    "same inputs"
                )
            first = first or (variant, signature)
            sums = values if sums is None else _added(sums, values, index, self.ir)
        assert sums is not None and first is not None
        if not sums:
            return  # the spec has no global_sum: nothing to sum up
        self._step_totals = StepTotals(*first, all_reduce(sums, self._group))

    def end_step(self) -> None:
        """Forget the totals of `begin_step`: later calls sum over ranks within each call."""
        self._step_totals = None

    def _global_sum_arguments(
        self, call: dict[str, Any]
    ) -> tuple[list[torch.Tensor], tuple, tuple[str, ...]]:
        """The arguments of the spec's `global_sum`s on one micro-batch, its variant and what
        those arguments are (`totals_signature`). The call may leave out every input the
        arguments do not read (logits that do not exist yet, when a mask is what is counted)."""
        step = call.pop("step", 0)
        params = call.pop("params", None)
        self._use_variant_of(call, check=False)
        ir = self.ir
        graph, read = _arguments_graph(ir, self.__dict__.setdefault("_argument_graphs", {}))
        tensors, sizes = self._bind(call, unread=frozenset(s.name for s in ir.inputs) - read)
        device = tensors[0].device if tensors else self.param_values.device
        args = [*tensors, self._step(step, self._compute_dtype(tensors), device)]
        if self.SPEC["params"]:
            args.append(self._params_on(device, params or {}))
        try:
            with torch.no_grad():
                values = list(graph(*args))
        except (RuntimeError, IndexError) as error:
            raise self._call_error(error, tensors, sizes) from error
        return values, _variant_key(ir), totals_signature(ir)

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

    def _sliced(
        self,
        ir: SpecIR,
        required: bool = False,
        collectives: Collectives | None = None,
        stepped: bool = False,
    ) -> Any:
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
        return SlicedGraph(
            prepared, plan, self._chunk, compile, backend, mode, collectives, stepped
        )

    @property
    def choices(self) -> dict[str, str]:
        return {name: c["value"] for name, c in self.SPEC["choices"].items()}

    def _set_choice(self, name: str, value: Any) -> None:
        spec = self.SPEC["choices"][name]
        if value == spec["value"]:
            return
        _check_choice(name, value, spec["choices"])
        floats = self._floats  # a rebuild keeps the numeric params as they are
        self._install(self._variant_ir({**self.choices, name: value}, frozenset(self.ir.computed)))
        self._floats = floats

    @property
    def code(self) -> str:
        """The generated Python code of the loss graph."""
        return readable_code(self.graph_module)

    def extra_repr(self) -> str:
        return f"spec={self.SPEC['name']!r}, compiled={self._compile_options[0]}"


@dataclass(frozen=True)
class StepTotals:
    """The totals of one optimizer step's `global_sum`s, for the variant they were made for
    and what they sum (`totals_signature`)."""

    variant: tuple
    signature: tuple[str, ...]
    totals: list[torch.Tensor]


class _WithTotals:
    """A stepped graph, called with the step's totals after the call's own arguments (in the
    call's compute dtype, on its device)."""

    def __init__(self, graph: Any, n_inputs: int, module: LossModule):
        self.graph = graph
        self.n_inputs = n_inputs
        self.module = module

    def __call__(self, *args: Any) -> Any:
        step = args[self.n_inputs]
        step_totals = self.module._step_totals
        assert step_totals is not None
        totals = [t.to(dtype=step.dtype, device=step.device) for t in step_totals.totals]
        return self.graph(*args, *totals)


def _variant_key(ir: SpecIR) -> tuple:
    return (tuple(sorted((c.name, c.value) for c in ir.choices)), frozenset(ir.computed))


def _describe_variant(key: tuple) -> str:
    choices, computed = key
    parts = [f"{name}={value!r}" for name, value in choices]
    parts.append(
        "deriving " + ", ".join(f"`{n}`" for n in sorted(computed))
        if computed
        else "no derived input computed"
    )
    return "; ".join(parts)


def _arguments_graph(ir: SpecIR, graphs: dict[tuple, Any]) -> tuple[Any, frozenset[str]]:
    """The graph of the `global_sum` arguments of a variant, and the inputs it reads."""
    key = _variant_key(ir)
    if key not in graphs:
        graph_module = lower_arguments(ir)
        graphs[key] = (graph_module.forward, read_inputs(graph_module, ir))
    return graphs[key]


def _added(
    sums: list[torch.Tensor], values: list[torch.Tensor], index: int, ir: SpecIR
) -> list[torch.Tensor]:
    """The running sums of the `global_sum` arguments with one more micro-batch's."""
    out = []
    for node_id, total, value in zip(global_sums(ir), sums, values, strict=True):
        if total.shape != value.shape:
            node = ir.node(node_id)
            raise InputError(
                f"begin_step: the argument of global_sum() at {node.span.file}:"
                f"{node.span.line} has shape {tuple(value.shape)} in micro-batch {index} and "
                f"{tuple(total.shape)} before: it is summed over the micro-batches, so its "
                "shape must be the same in each"
            )
        dtype = torch.promote_types(total.dtype, value.dtype)
        out.append(total.to(dtype) + value.to(device=total.device, dtype=dtype))
    return out


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
