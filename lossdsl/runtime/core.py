"""The run-time contract of a compiled loss, in plain torch.

This module imports nothing but torch and the standard library: `lossdsl compile` copies
its source into standalone modules, so it must stay self-contained.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch


class InputError(ValueError):
    """A wrong input at run time: names the input, what was expected and what was passed."""


class LossOutput(NamedTuple):
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor]


_EXACT_FLOATS = {
    "f64": torch.float64,
    "f32": torch.float32,
    "bf16": torch.bfloat16,
    "f16": torch.float16,
}
_INTEGERS = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}


class LossRuntime:
    """Binds keyword inputs, checks them, carries params and `step` as tensors.

    The concrete class provides `SPEC` (plain data describing the spec) and `_graph`
    (the lowered loss: `(*inputs, step, params) -> (loss, *terms, *weights, *metrics)`).
    """

    SPEC: dict[str, Any]
    param_values: torch.Tensor
    _graph: Any

    def _init_runtime(self, params: dict[str, Any] | None = None) -> None:
        # Kept on the host too, so that changing a param never reads the device back.
        self._param_floats = [
            math.nan if p["default"] is None else float(p["default"]) for p in self.SPEC["params"]
        ]
        self.register_buffer(  # type: ignore[attr-defined]
            "param_values", torch.tensor(self._param_floats, dtype=torch.float64), persistent=False
        )
        if params:
            self.set_params(**params)

    # ---- params ---------------------------------------------------------------------

    def set_params(self, **values: Any) -> None:
        """Change params for every later call; never rebuilds nor recompiles."""
        floats = self._updated_params(values)
        if floats is not None:
            self._param_floats = floats
            self.param_values = self._param_tensor(floats)

    def _param_tensor(self, floats: list[float]) -> torch.Tensor:
        return torch.tensor(floats, dtype=torch.float64, device=self.param_values.device)

    def _updated_params(self, values: dict[str, Any]) -> list[float] | None:
        names = [p["name"] for p in self.SPEC["params"]]
        updated = list(self._param_floats) if values else None
        for name, value in values.items():
            if name in self.SPEC.get("choices", {}):
                self._set_choice(name, value)
                continue
            if name not in names:
                known = ", ".join(names + list(self.SPEC.get("choices", {}))) or "none"
                raise InputError(
                    f"`{name}` is not a param of {self.SPEC['name']} (its params: {known})"
                )
            assert updated is not None
            updated[names.index(name)] = self._checked_param(name, value)
        return updated

    def _checked_param(self, name: str, value: Any) -> float:
        spec = next(p for p in self.SPEC["params"] if p["name"] == name)
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise InputError(
                    f"param `{name}` takes a number, got a tensor of shape {tuple(value.shape)}"
                )
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"param `{name}` takes a number, got {value!r}")
        value = float(value)
        lo, hi, lo_closed, hi_closed = spec["range"]
        inside = (
            not math.isnan(value)
            and (value >= lo if lo_closed else value > lo)
            and (value <= hi if hi_closed else value < hi)
        )
        if not inside:
            shown = f"{'[' if lo_closed else '('}{_num(lo)}, {_num(hi)}{']' if hi_closed else ')'}"
            raise InputError(f"param `{name}` = {value!r} is outside its range {shown}")
        return value

    def _choice(self, name: str) -> Any:
        return self.SPEC["choices"][name]["value"]

    def _set_choice(self, name: str, value: Any) -> None:
        spec = self.SPEC["choices"][name]
        if value == spec["value"]:
            return
        raise InputError(
            f'`{name}` is a static choice fixed to "{spec["value"]}" when this '
            f'module was built; build a new module with {name}="{value}"'
        )

    # ---- the call -------------------------------------------------------------------

    def forward(
        self, step: Any = 0, params: dict[str, Any] | None = None, **inputs: torch.Tensor
    ) -> LossOutput:
        tensors, dtype = self._bind_inputs(inputs)
        device = next(
            (t.device for t in tensors if isinstance(t, torch.Tensor)), self.param_values.device
        )
        step_tensor = self._step(step, dtype, device)
        if self.param_values.dtype != torch.float64:  # `.to(dtype)` cast the buffer
            self.param_values = self._param_tensor(self._param_floats)
        vector = self.param_values
        if params:
            for name in params:
                if name in self.SPEC.get("choices", {}) and params[name] != self._choice(name):
                    raise InputError(
                        f"`{name}` is a static choice: it is fixed when the module is built, "
                        f"not for one call; use set_params({name}={params[name]!r}) or load "
                        "the spec with it"
                    )
            floats = self._updated_params(params)
            if floats is not None:
                vector = self._param_tensor(floats)
        if vector.device != device:
            vector = self._moved_params(vector, device)
        args = [*tensors, step_tensor]
        if self.SPEC["params"]:
            args.append(vector)
        try:
            outputs = self._graph(*args)
        except RuntimeError as error:
            # Sizes the checks above could not relate (e.g. `...` of one input against a
            # named dim of another) meet inside the graph: say which inputs, not where.
            shapes = ", ".join(
                f"{spec['name']}: {tuple(t.shape)}"
                for spec, t in zip(self.SPEC["inputs"], tensors, strict=True)
            )
            raise InputError(
                f"{self.SPEC['name']}: the inputs do not fit together ({shapes}): {error}"
            ) from error
        return self._pack(outputs)

    def _moved_params(self, vector: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The params vector on the inputs' device, copied once per vector and device (not on
        every call) when the module was left on another device than its inputs."""
        cached = self.__dict__.get("_params_moved")
        if cached is not None and cached[0] is vector and cached[1] == device:
            return cached[2]
        moved = vector.to(device)
        if vector is self.param_values:  # a per-call `params=` vector is not kept
            self.__dict__["_params_moved"] = (vector, device, moved)
        return moved

    def _step(self, step: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """`step` as a 0-d tensor; a number's tensor is kept while the number, dtype and device
        stay the same, so a call with a fixed step creates (and on a GPU copies) nothing."""
        if isinstance(step, torch.Tensor):
            if step.numel() != 1:
                raise InputError(
                    f"`step` must be a scalar, got a tensor of shape {tuple(step.shape)}"
                )
            return step.detach().reshape(()).to(device=device, dtype=dtype)
        if isinstance(step, bool) or not isinstance(step, int | float):
            raise InputError(f"`step` must be a number or a 0-d tensor, got {step!r}")
        key = (step, dtype, device)
        cached = self.__dict__.get("_step_tensor")
        if cached is not None and cached[0] == key:
            return cached[1]
        tensor = torch.tensor(step, dtype=dtype, device=device)
        self.__dict__["_step_tensor"] = (key, tensor)
        return tensor

    def _pack(self, outputs: tuple[torch.Tensor, ...]) -> LossOutput:
        terms, metrics = self.SPEC["terms"], self.SPEC["metrics"]
        n = len(terms)
        loss = outputs[0]
        term_values = outputs[1 : 1 + n]
        weight_values = outputs[1 + n : 1 + 2 * n]
        metric_values = outputs[1 + 2 * n :]
        return LossOutput(
            loss,
            {name: t.detach() for name, t in zip(terms, term_values, strict=True)},
            {name: w.detach() for name, w in zip(terms, weight_values, strict=True)},
            {name: m.detach() for name, m in zip(metrics, metric_values, strict=True)},
        )

    # ---- input checks ---------------------------------------------------------------

    def _bind_inputs(self, given: dict[str, Any]) -> tuple[list[torch.Tensor], torch.dtype]:
        specs = self.SPEC["inputs"]
        names = [s["name"] for s in specs]
        for name in given:
            if name not in names:
                raise InputError(
                    f"{self.SPEC['name']} has no input `{name}` (its inputs: {', '.join(names)})"
                )
        missing = [s["name"] for s in specs if s["name"] not in given and s["default"] is None]
        if missing:
            raise InputError(
                f"missing input{'s' if len(missing) > 1 else ''} "
                f"`{'`, `'.join(missing)}` of {self.SPEC['name']}"
            )
        sizes: dict[str, int] = {}
        bound_by: dict[str, str] = {}
        leading: list[tuple[int, ...] | None] = [None]
        bound: dict[str, torch.Tensor] = {}
        for spec in specs:
            if spec["name"] in given:
                bound[spec["name"]] = self._check_input(
                    spec, given[spec["name"]], sizes, bound_by, leading
                )
        dtype = self._compute_dtype(list(bound.values()))
        tensors = []
        for spec in specs:
            tensor = bound.get(spec["name"])
            if tensor is None:
                tensor = self._default_input(spec, sizes, leading[0], dtype, bound)
            tensors.append(tensor)
        return tensors, dtype

    def _check_input(
        self,
        spec: dict[str, Any],
        value: Any,
        sizes: dict[str, int],
        bound_by: dict[str, str],
        leading: list[tuple[int, ...] | None],
    ) -> torch.Tensor:
        name, dims = spec["name"], spec["dims"]
        if not isinstance(value, torch.Tensor):
            raise InputError(
                f"input `{name}` expects a tensor {self._expected(spec, sizes, bound_by)}"
                f", got {type(value).__name__}"
            )
        if not _dtype_matches(spec["dtype"], value.dtype):
            raise InputError(
                f"input `{name}` expects {self._expected(spec, sizes, bound_by)}, "
                f"got {_describe(value)}"
            )
        explicit = [d for d in dims if d != "..."]
        has_leading = bool(dims) and dims[0] == "..."
        rank_ok = value.dim() >= len(explicit) if has_leading else value.dim() == len(explicit)
        if not rank_ok:
            raise InputError(
                f"input `{name}` expects {self._expected(spec, sizes, bound_by)}, "
                f"got {_describe(value)}"
            )
        shape = tuple(value.shape)
        if has_leading:
            prefix = shape[: len(shape) - len(explicit)]
            if leading[0] is not None and prefix != leading[0]:
                raise InputError(
                    f"input `{name}` expects {self._expected(spec, sizes, bound_by)}"
                    f" (... = {leading[0]}), got {_describe(value)}"
                )
            leading[0] = prefix
        for dim, size in zip(explicit, shape[len(shape) - len(explicit) :], strict=True):
            if isinstance(dim, int):
                if dim != size:
                    raise InputError(
                        f"input `{name}` expects "
                        f"{self._expected(spec, sizes, bound_by)}, got "
                        f"{_describe(value)}"
                    )
            elif dim in sizes and sizes[dim] != size:
                raise InputError(
                    f"input `{name}` expects {self._expected(spec, sizes, bound_by)}"
                    f", got {_describe(value)}"
                )
        for dim, size in zip(explicit, shape[len(shape) - len(explicit) :], strict=True):
            if isinstance(dim, str) and dim not in sizes:
                sizes[dim] = size
                bound_by[dim] = name
        if spec["dtype"] == "bool" and value.dtype != torch.bool:
            value = value != 0
        return value if spec["grad"] else value.detach()

    def _expected(
        self, spec: dict[str, Any], sizes: dict[str, int], bound_by: dict[str, str]
    ) -> str:
        dims = ", ".join(str(d) for d in spec["dims"])
        known = [d for d in spec["dims"] if isinstance(d, str) and d in sizes]
        text = f"{spec['dtype']}[{dims}]"
        if known:
            text += " with " + ", ".join(f"{d}={sizes[d]}" for d in known)
            sources = sorted({bound_by[d] for d in known})
            text += f" (bound by `{'`, `'.join(sources)}`)"
        return text

    def _default_input(
        self,
        spec: dict[str, Any],
        sizes: dict[str, int],
        leading: tuple[int, ...] | None,
        dtype: torch.dtype,
        bound: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        shape: list[int] = []
        for dim in spec["dims"]:
            if dim == "...":
                if leading is None:
                    raise InputError(
                        f"optional input `{spec['name']}` was not passed and its "
                        "`...` dims are not bound by any other input"
                    )
                shape.extend(leading)
            elif isinstance(dim, int):
                shape.append(dim)
            elif dim in sizes:
                shape.append(sizes[dim])
            else:
                raise InputError(
                    f"optional input `{spec['name']}` was not passed and dim {dim} "
                    "is not bound by any other input; pass it explicitly"
                )
        kind = {"bool": torch.bool, "int": torch.int64}.get(spec["dtype"], dtype)
        device = next((t.device for t in bound.values()), self.param_values.device)
        return torch.full((), spec["default"], dtype=kind, device=device).expand(shape)

    def _compute_dtype(self, tensors: list[torch.Tensor]) -> torch.dtype:
        """The widest floating dtype among the inputs, at least float32."""
        floats = [t.dtype for t in tensors if isinstance(t, torch.Tensor) and t.is_floating_point()]
        return torch.float64 if torch.float64 in floats else torch.float32


def _dtype_matches(declared: str, dtype: torch.dtype) -> bool:
    if declared == "float":
        return dtype.is_floating_point
    if declared in _EXACT_FLOATS:
        return dtype == _EXACT_FLOATS[declared]
    if declared == "int":
        return dtype in _INTEGERS
    return declared == "bool" and not dtype.is_complex  # 0/1 tensors of any dtype


def _describe(value: torch.Tensor) -> str:
    return f"{value.dtype} tensor of shape {tuple(value.shape)}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(int(value)) if float(value).is_integer() else repr(value)
