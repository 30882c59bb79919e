"""The run-time contract of a compiled loss, in plain torch.

`lossdsl compile` copies this source into standalone modules, so it imports nothing but
torch and the standard library, and stays short enough to read there.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

import torch


class InputError(ValueError):
    """A wrong input at run time: names the input, what was expected and what was passed."""


class _LossOutputFields(NamedTuple):
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor]


class LossOutput(_LossOutputFields):
    """`(loss, terms, weights, metrics)`, and `states`: the value of each state, learned
    param and `ema` after the call, detached. `states` is an attribute, not a fifth item, so
    `loss, terms, weights, metrics = out` unpacks as it always has."""

    states: dict[str, torch.Tensor]

    def __new__(cls, loss, terms, weights, metrics, states=None):  # type: ignore[no-untyped-def]
        out = super().__new__(cls, loss, terms, weights, metrics)
        out.states = {} if states is None else states
        return out

    def _replace(self, **changes: Any) -> LossOutput:
        states = changes.pop("states", self.states)
        return LossOutput(*super()._replace(**changes), states=states)


_FLOATS = {"f64": torch.float64, "f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
_INTS = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}
# The message of the graph's assert on class indices (`check_indices` in backend/lowering.py).
_INDEX_ASSERT = re.compile(
    r"inputs? (.*?) (?:has|have|leads? to) a class index outside \[0, (\w+)\)"
)


class LossRuntime:
    """Binds keyword inputs, checks them, carries params and `step` as tensors.

    The concrete class provides `SPEC` (plain data describing the spec) and `_graph`
    (the lowered loss: `(*inputs, step, params, *learned, states, training) -> (loss,
    *terms, *weights, *metrics, *reported, new states)`, the last four parts only for a
    spec with learned params or states). Params travel as one float64 vector, NaN where a
    param keeps its declared default expression; they are kept on the host too, so changing
    one never reads the device. States are one float64 buffer, `state_values` (NaN: the
    state starts at its INIT on the next call), replaced by the graph's new values after
    each call (never written in place: the last call's backward may still read the old
    values); learned params are `nn.Parameter`s in `learned`.
    """

    SPEC: dict[str, Any]
    param_values: torch.Tensor
    state_values: torch.Tensor
    _graph: Any

    def _init_runtime(self, params: dict[str, Any] | None = None, adaptive: bool = True) -> None:
        """`adaptive=False`: the graph holds its learned params and states itself."""
        self._floats = [
            math.nan if p["default"] is None else p["default"] for p in self.SPEC["params"]
        ]
        self.register_buffer("param_values", _float64(self._floats), persistent=False)  # type: ignore[attr-defined]
        learned = self.SPEC.get("learned", []) if adaptive else []
        if learned:
            self.learned = torch.nn.ParameterDict(
                {p["name"]: torch.nn.Parameter(torch.tensor(float(p["init"]))) for p in learned}
            )
        if self.SPEC.get("states") and adaptive:
            fresh = _float64([math.nan] * len(self.SPEC["states"]))
            self.register_buffer("state_values", fresh)  # type: ignore[attr-defined]
        self.set_params(**(params or {}))

    def reset_state(self) -> None:
        """Every state starts again at its INIT on the next call (emas forget their past)."""
        if self.SPEC.get("states"):
            self.state_values = torch.full_like(self.state_values, math.nan)

    def _adaptive_args(self, device: torch.device) -> list[torch.Tensor]:
        """The graph's arguments after `params`: learned params, states, the module's mode."""
        args: list[torch.Tensor] = [self.learned[p["name"]] for p in self.SPEC.get("learned", [])]
        if self.SPEC.get("states"):
            args += [self.state_values.to(device), self._mode(device)]
        return args

    def _mode(self, device: torch.device) -> torch.Tensor:
        """`self.training` as a 0-d bool tensor, made once per mode and device."""
        key = (bool(self.training), device)  # type: ignore[attr-defined]
        if self.__dict__.get("_mode_key") != key:
            self.__dict__["_mode_key"] = key
            self.__dict__["_mode_tensor"] = torch.tensor(key[0], device=device)
        return self.__dict__["_mode_tensor"]

    def _keep_states(self, new_states: torch.Tensor) -> None:
        self.state_values = new_states.detach()

    def set_params(self, **values: Any) -> None:
        """Change params for every later call; never rebuilds nor recompiles."""
        self._floats = self._with(values)
        self.param_values = _float64(self._floats, self.param_values.device)

    def _with(self, values: dict[str, Any]) -> list[float]:
        floats, names = list(self._floats), [p["name"] for p in self.SPEC["params"]]
        for name, value in values.items():
            if name in self.SPEC["choices"]:
                self._set_choice(name, value)
            elif name in names:
                floats[names.index(name)] = _checked(self.SPEC["params"][names.index(name)], value)
            else:
                known = ", ".join(names + list(self.SPEC["choices"])) or "none"
                raise InputError(
                    f"`{name}` is not a param of {self.SPEC['name']} (its params: {known})"
                )
        return floats

    def _set_choice(self, name: str, value: Any) -> None:
        fixed = self.SPEC["choices"][name]["value"]
        if value != fixed:
            raise InputError(
                f'`{name}` is a static choice fixed to "{fixed}" when this module was built; '
                f'build a new module with {name}="{value}"'
            )

    def forward(
        self, step: Any = 0, params: dict[str, Any] | None = None, **inputs: Any
    ) -> LossOutput:
        tensors, sizes = self._bind(inputs)
        device = tensors[0].device if tensors else self.param_values.device
        args = [*tensors, self._step(step, self._compute_dtype(tensors), device)]
        if self.SPEC["params"]:
            args.append(self._params_on(device, params or {}))
        elif params:  # only static choices (or unknown names) to check: the graph takes none
            self._refuse_choice_overrides(params)
            self._with(params)
        args += self._adaptive_args(device)
        try:
            out = self._graph(*args)
        except (RuntimeError, IndexError) as error:
            raise self._call_error(error, tensors, sizes) from error
        n, terms, metrics = len(self.SPEC["terms"]), self.SPEC["terms"], self.SPEC["metrics"]
        reported = self.SPEC.get("reported", [])
        at = 1 + 2 * n + len(metrics)
        values = out[at : at + len(reported)]
        if self.SPEC.get("states") and len(out) > at + len(reported):
            self._keep_states(out[at + len(reported)])
        return LossOutput(
            out[0],
            {name: t.detach() for name, t in zip(terms, out[1 : 1 + n], strict=True)},
            {name: w.detach() for name, w in zip(terms, out[1 + n : 1 + 2 * n], strict=True)},
            {name: m.detach() for name, m in zip(metrics, out[1 + 2 * n : at], strict=True)},
            {name: v.detach() for name, v in zip(reported, values, strict=True)},
        )

    def _params_on(self, device: torch.device, overrides: dict[str, Any]) -> torch.Tensor:
        """This call's params vector on `device` (the module's own is moved once, not per call)."""
        self._refuse_choice_overrides(overrides)
        if overrides:
            return _float64(self._with(overrides), device)
        if self.param_values.dtype != torch.float64:  # `module.to(dtype)` cast the buffer
            self.param_values = _float64(self._floats, self.param_values.device)
        moved = self.__dict__.get("_moved_params")
        if moved is None or moved[0] is not self.param_values or moved[1].device != device:
            moved = (self.param_values, self.param_values.to(device))
            self.__dict__["_moved_params"] = moved
        return moved[1]

    def _refuse_choice_overrides(self, overrides: dict[str, Any]) -> None:
        for name, value in overrides.items():
            if name in self.SPEC["choices"] and value != self.SPEC["choices"][name]["value"]:
                raise InputError(
                    f"`{name}` is a static choice: it is fixed when the module is built, not for "
                    f"one call; use set_params({name}={value!r}) or load the spec with it"
                )

    def _step(self, step: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """`step` as a 0-d tensor; a number's tensor is kept while it, the dtype and device stay."""
        wrong = "`step` must be a number or a one-element tensor, got"
        if isinstance(step, torch.Tensor):
            if step.numel() != 1:
                raise InputError(f"{wrong} a tensor of shape {tuple(step.shape)}")
            return step.detach().reshape(()).to(device=device, dtype=dtype)
        if isinstance(step, bool) or not isinstance(step, int | float):
            raise InputError(f"{wrong} {step!r}")
        if self.__dict__.get("_step_key") != (step, dtype, device):
            self.__dict__["_step_key"] = (step, dtype, device)
            self.__dict__["_step_tensor"] = torch.tensor(step, dtype=dtype, device=device)
        return self.__dict__["_step_tensor"]

    def _call_error(
        self, error: Exception, tensors: list[torch.Tensor], sizes: _Sizes
    ) -> InputError:
        """What went wrong inside the graph, in terms of the inputs."""
        found = _INDEX_ASSERT.search(str(error))
        if found:
            names, dim = re.findall(r"`(\w+)`", found.group(1)), found.group(2)
            text = f"{found.group(0)} with {sizes.describe([dim])}"
            if " has " in found.group(0):  # the input is the index itself: show what is wrong
                index = tensors[[s["name"] for s in self.SPEC["inputs"]].index(names[0])]
                wrong = index[(index < 0) | (index >= sizes.size[dim])].unique()[:3].tolist()
                text += f"; found {', '.join(map(str, wrong))}"
            return InputError(text)
        # Sizes the checks could not relate (`...` of one input against a named dim of another).
        shapes = ", ".join(
            f"{s['name']}: {tuple(t.shape)}"
            for s, t in zip(self.SPEC["inputs"], tensors, strict=True)
        )
        return InputError(
            f"{self.SPEC['name']}: the inputs do not fit together ({shapes}): {error}"
        )

    def _compute_dtype(self, tensors: list[torch.Tensor]) -> torch.dtype:
        """The widest floating dtype among the inputs, at least float32."""
        return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32

    def _bind(
        self, given: dict[str, Any], unread: frozenset[str] = frozenset()
    ) -> tuple[list[torch.Tensor], _Sizes]:
        """The call's tensors in the order of the inputs, checked. `unread`: inputs the graph
        does not read, which may be left out (an empty tensor stands in for them)."""
        specs, name = self.SPEC["inputs"], self.SPEC["name"]
        names = [s["name"] for s in specs]
        unknown = [n for n in given if n not in names]
        if unknown:
            raise InputError(f"{name} has no input `{unknown[0]}` (its inputs: {', '.join(names)})")
        passed = {*given, *unread}
        missing = [s["name"] for s in specs if s["name"] not in passed and s["default"] is None]
        if missing:
            raise InputError(
                f"missing input{'s' * (len(missing) > 1)} `{'`, `'.join(missing)}` of {name}"
            )
        sizes = _Sizes()
        bound = {s["name"]: sizes.bind(s, given[s["name"]]) for s in specs if s["name"] in given}
        dtype = self._compute_dtype(list(bound.values()))
        device = next((t.device for t in bound.values()), self.param_values.device)
        bound.update((n, torch.empty(0, dtype=dtype, device=device)) for n in unread - set(bound))
        tensors = [
            bound[s["name"]] if s["name"] in bound else sizes.default(s, dtype, device)
            for s in specs
        ]
        return tensors, sizes


class _Sizes:
    """The sizes of the named dims (and of `...`) bound so far, and the input that bound each."""

    def __init__(self) -> None:
        self.size: dict[str, Any] = {}
        self.source: dict[str, str] = {}

    def bind(self, spec: dict[str, Any], value: Any) -> torch.Tensor:
        name, dims = spec["name"], spec["dims"]
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"input `{name}` expects a tensor {self.expected(spec)}, got {type(value).__name__}"
            )
        explicit = [d for d in dims if d != "..."]
        lead = value.dim() - len(explicit) if "..." in dims else 0
        wanted = [("...", tuple(value.shape[:lead]))] if "..." in dims else []
        wanted += list(zip(explicit, value.shape[lead:], strict=False))
        fits = (
            _dtype_fits(spec["dtype"], value.dtype)
            and lead >= 0
            and value.dim() == lead + len(explicit)
        )
        if not fits or any(
            self.size.get(d, n) != n if isinstance(d, str) else d != n for d, n in wanted
        ):
            lead_note = (
                f" (... = {self.size['...']})" if "..." in dims and "..." in self.size else ""
            )
            raise InputError(
                f"input `{name}` expects {self.expected(spec)}{lead_note}, got {_described(value)}"
            )
        for dim, n in wanted:
            if isinstance(dim, str) and dim not in self.size:
                self.size[dim], self.source[dim] = n, name
        if spec["dtype"] == "bool" and value.dtype != torch.bool:
            value = value != 0  # a float or int mask of 0s and 1s
        return value if spec["grad"] else value.detach()

    def default(
        self, spec: dict[str, Any], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """An optional input that was not passed: its default, broadcast to the bound sizes."""
        shape: list[int] = []
        for dim in spec["dims"]:
            if isinstance(dim, str) and dim not in self.size:
                what = "its `...` dims are" if dim == "..." else f"dim {dim} is"
                raise InputError(
                    f"optional input `{spec['name']}` was not passed and {what} not bound by any "
                    "other input; pass it explicitly"
                )
            shape += list(self.size[dim]) if dim == "..." else [self.size.get(dim, dim)]
        kind = {"bool": torch.bool, "int": torch.int64}.get(spec["dtype"], dtype)
        return torch.full((), spec["default"], dtype=kind, device=device).expand(shape)

    def expected(self, spec: dict[str, Any]) -> str:
        known = [d for d in spec["dims"] if isinstance(d, str) and d != "..." and d in self.size]
        text = f"{spec['dtype']}[{', '.join(str(d) for d in spec['dims'])}]"
        return f"{text} with {self.describe(known)}" if known else text

    def describe(self, dims: list[str]) -> str:
        sources = "`, `".join(sorted({self.source[d] for d in dims}))
        return ", ".join(f"{d}={self.size[d]}" for d in dims) + f" (bound by `{sources}`)"


def global_sum(x: torch.Tensor) -> torch.Tensor:
    """`global_sum(x)`: the sum of x over the ranks of the default process group, as a
    traceable functional collective (no graph break, no host sync); x itself without one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return x
    from torch.distributed import _functional_collectives as collectives

    return collectives.all_reduce(x, "sum", dist.group.WORLD)


def world_size() -> int:
    """The number of ranks of the default process group, 1 without one."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _checked(spec: dict[str, Any], value: Any) -> float:
    """A param's new value as a float, or an InputError naming the param and its range."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = (
            f"a tensor of shape {tuple(value.shape)}"
            if isinstance(value, torch.Tensor)
            else repr(value)
        )
        raise InputError(f"param `{spec['name']}` takes a number, got {shown}")
    lo, hi, lo_closed, hi_closed = spec["range"]
    value = float(value)
    if not (
        (lo <= value if lo_closed else lo < value) and (value <= hi if hi_closed else value < hi)
    ):
        shown = (
            f"{'[' if lo_closed else '('}{_number(lo)}, {_number(hi)}{']' if hi_closed else ')'}"
        )
        raise InputError(f"param `{spec['name']}` = {value!r} is outside its range {shown}")
    return value  # (NaN is outside every range: each comparison with it is false)


def _float64(values: list[float], device: Any = None) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, device=device)


def _dtype_fits(declared: str, dtype: torch.dtype) -> bool:
    if declared in _FLOATS:
        return dtype == _FLOATS[declared]
    return {"float": dtype.is_floating_point, "int": dtype in _INTS}.get(
        declared, not dtype.is_complex
    )


def _described(value: torch.Tensor) -> str:
    return f"{value.dtype} tensor of shape {tuple(value.shape)}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(int(value)) if float(value).is_integer() else repr(value)
