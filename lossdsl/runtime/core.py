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


class LossOutput(NamedTuple):
    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    weights: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor]


_FLOATS = {"f64": torch.float64, "f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
_INTS = {torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}
_INDEX_ASSERT = re.compile(
    r"inputs? (.*?) (?:has|have|leads? to) a class index outside \[0, (\w+)\)"
)


class LossRuntime:
    """Binds keyword inputs, checks them, carries params and `step` as tensors.

    The concrete class provides `SPEC` (plain data describing the spec) and `_graph`
    (the lowered loss: `(*inputs, step, params) -> (loss, *terms, *weights, *metrics)`).
    Params live in a float64 vector, NaN where a param keeps its declared default expression,
    and also on the host, so that changing one never reads the device back.
    """

    SPEC: dict[str, Any]
    param_values: torch.Tensor
    _graph: Any

    def _init_runtime(self, params: dict[str, Any] | None = None) -> None:
        self._floats = [math.nan if p["default"] is None else p["default"] for p in self._params]
        self.register_buffer("param_values", self._vector(self._floats), persistent=False)  # type: ignore[attr-defined]
        self.set_params(**(params or {}))

    @property
    def _params(self) -> list[dict[str, Any]]:
        return self.SPEC["params"]

    def set_params(self, **values: Any) -> None:
        """Change params for every later call; never rebuilds nor recompiles."""
        self._floats = self._with(values)
        self.param_values = self._vector(self._floats)

    def _vector(self, floats: list[float]) -> torch.Tensor:
        device = self.param_values.device if hasattr(self, "param_values") else None
        return torch.tensor(floats, dtype=torch.float64, device=device)

    def _with(self, values: dict[str, Any]) -> list[float]:
        floats, names = list(self._floats), [p["name"] for p in self._params]
        for name, value in values.items():
            if name in self.SPEC["choices"]:
                self._set_choice(name, value)
            elif name in names:
                floats[names.index(name)] = _checked(self._params[names.index(name)], value)
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

    # ---- the call -------------------------------------------------------------------

    def forward(
        self, step: Any = 0, params: dict[str, Any] | None = None, **inputs: Any
    ) -> LossOutput:
        tensors, sizes = self._bind(inputs)
        dtype = self._compute_dtype(tensors)
        device = tensors[0].device if tensors else self.param_values.device
        args = [*tensors, self._step(step, dtype, device)]
        if self._params:
            args.append(self._params_vector(params or {}, device))
        try:
            outputs = self._graph(*args)
        except (RuntimeError, IndexError) as error:
            raise self._call_error(error, tensors, sizes) from error
        terms, metrics = self.SPEC["terms"], self.SPEC["metrics"]
        n = len(terms)
        return LossOutput(
            outputs[0],
            {name: t.detach() for name, t in zip(terms, outputs[1 : 1 + n], strict=True)},
            {name: w.detach() for name, w in zip(terms, outputs[1 + n : 1 + 2 * n], strict=True)},
            {name: m.detach() for name, m in zip(metrics, outputs[1 + 2 * n :], strict=True)},
        )

    def _params_vector(self, overrides: dict[str, Any], device: torch.device) -> torch.Tensor:
        """This call's params on `device`; the module's vector is moved once, not per call."""
        for name, value in overrides.items():
            fixed = self.SPEC["choices"].get(name, {}).get("value", value)
            if value != fixed:
                raise InputError(
                    f"`{name}` is a static choice: it is fixed when the module is built, not "
                    f"for one call; use set_params({name}={value!r}) or load the spec with it"
                )
        if overrides:
            return self._vector(self._with(overrides)).to(device)
        if self.param_values.dtype != torch.float64:  # `module.to(dtype)` cast the buffer
            self.param_values = self._vector(self._floats)
        if self.param_values.device != device:
            moved = self.__dict__.get("_moved")
            if moved is None or moved[0] is not self.param_values or moved[1].device != device:
                self.__dict__["_moved"] = moved = (self.param_values, self.param_values.to(device))
            return moved[1]
        return self.param_values

    def _step(self, step: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """`step` as a 0-d tensor, kept while the number, dtype and device stay the same."""
        if isinstance(step, torch.Tensor):
            if step.numel() != 1:
                raise InputError(
                    f"`step` must be a scalar, got a tensor of shape {tuple(step.shape)}"
                )
            return step.detach().reshape(()).to(device=device, dtype=dtype)
        if isinstance(step, bool) or not isinstance(step, int | float):
            raise InputError(f"`step` must be a number or a 0-d tensor, got {step!r}")
        cached = self.__dict__.get("_step_tensor")
        if cached is None or cached[0] != (step, dtype, device):
            cached = self.__dict__["_step_tensor"] = (
                (step, dtype, device),
                torch.tensor(step, dtype=dtype, device=device),
            )
        return cached[1]

    def _call_error(
        self, error: Exception, tensors: list[torch.Tensor], sizes: _Sizes
    ) -> InputError:
        """What went wrong in the graph, in the inputs' terms."""
        found = _INDEX_ASSERT.search(str(error))
        if found:  # the graph's assert on class indices (see `check_indices` in the lowering)
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

    # ---- inputs ---------------------------------------------------------------------

    def _compute_dtype(self, tensors: list[torch.Tensor]) -> torch.dtype:
        """The widest floating dtype among the inputs, at least float32."""
        return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32

    def _bind(self, given: dict[str, Any]) -> tuple[list[torch.Tensor], _Sizes]:
        specs = self.SPEC["inputs"]
        names = [s["name"] for s in specs]
        for name in given:
            if name not in names:
                raise InputError(
                    f"{self.SPEC['name']} has no input `{name}` (its inputs: {', '.join(names)})"
                )
        missing = [s["name"] for s in specs if s["name"] not in given and s["default"] is None]
        if missing:
            plural = "s" if len(missing) > 1 else ""
            raise InputError(
                f"missing input{plural} `{'`, `'.join(missing)}` of {self.SPEC['name']}"
            )
        sizes = _Sizes()
        bound = {s["name"]: sizes.bind(s, given[s["name"]]) for s in specs if s["name"] in given}
        dtype = self._compute_dtype(list(bound.values()))
        device = next((t.device for t in bound.values()), self.param_values.device)
        tensors = [
            bound[s["name"]] if s["name"] in bound else sizes.default(s, dtype, device)
            for s in specs
        ]
        return tensors, sizes


class _Sizes:
    """The sizes of the named dims (and `...`) bound so far, and which input bound each."""

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
        fits = _dtype_fits(spec["dtype"], value.dtype) and value.dim() == lead + len(explicit)
        fits = fits and lead >= 0
        fits = fits and all(
            self.size.get(d, n) == n if isinstance(d, str) else d == n for d, n in wanted
        )
        if not fits:
            lead_note = (
                f" (... = {self.size['...']})" if "..." in dims and "..." in self.size else ""
            )
            raise InputError(
                f"input `{name}` expects {self.expected(spec)}{lead_note}, got {_describe(value)}"
            )
        for dim, n in wanted:
            if isinstance(dim, str) and dim not in self.size:
                self.size[dim], self.source[dim] = n, name
        if spec["dtype"] == "bool" and value.dtype != torch.bool:
            value = value != 0
        return value if spec["grad"] else value.detach()

    def default(
        self, spec: dict[str, Any], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        shape: list[int] = []
        for dim in spec["dims"]:
            if isinstance(dim, str) and dim not in self.size:
                what = "its `...` dims are" if dim == "..." else f"dim {dim} is"
                raise InputError(
                    f"optional input `{spec['name']}` was not passed and {what} not bound by "
                    "any other input; pass it explicitly"
                )
            shape += list(self.size[dim]) if dim == "..." else [self.size.get(dim, dim)]
        kind = {"bool": torch.bool, "int": torch.int64}.get(spec["dtype"], dtype)
        return torch.full((), spec["default"], dtype=kind, device=device).expand(shape)

    def expected(self, spec: dict[str, Any]) -> str:
        dims = [d for d in spec["dims"] if isinstance(d, str) and d != "..." and d in self.size]
        text = f"{spec['dtype']}[{', '.join(str(d) for d in spec['dims'])}]"
        return f"{text} with {self.describe(dims)}" if dims else text

    def describe(self, dims: list[str]) -> str:
        sources = "`, `".join(sorted({self.source[d] for d in dims}))
        return ", ".join(f"{d}={self.size[d]}" for d in dims) + f" (bound by `{sources}`)"


def _checked(spec: dict[str, Any], value: Any) -> float:
    name = spec["name"]
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise InputError(
                f"param `{name}` takes a number, got a tensor of shape {tuple(value.shape)}"
            )
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"param `{name}` takes a number, got {value!r}")
    lo, hi, lo_closed, hi_closed = spec["range"]
    value = float(value)
    if (
        math.isnan(value)
        or not (lo <= value if lo_closed else lo < value)
        or not (value <= hi if hi_closed else value < hi)
    ):
        shown = f"{'[' if lo_closed else '('}{_num(lo)}, {_num(hi)}{']' if hi_closed else ')'}"
        raise InputError(f"param `{name}` = {value!r} is outside its range {shown}")
    return value


def _dtype_fits(declared: str, dtype: torch.dtype) -> bool:
    if declared in _FLOATS:
        return dtype == _FLOATS[declared]
    kinds = {"float": dtype.is_floating_point, "int": dtype in _INTS}
    return kinds.get(
        declared, declared == "bool" and not dtype.is_complex
    )  # bool: 0/1 of any dtype


def _describe(value: torch.Tensor) -> str:
    return f"{value.dtype} tensor of shape {tuple(value.shape)}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(int(value)) if float(value).is_integer() else repr(value)
