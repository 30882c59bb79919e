"""The plain-data description of a spec that the runtime needs (no IR at run time)."""

from __future__ import annotations

import math
from typing import Any

from lossdsl.ir import SpecIR


def spec_metadata(ir: SpecIR) -> dict[str, Any]:
    return {
        "name": ir.name,
        "inputs": [
            {
                "name": i.name,
                "dtype": i.dtype,
                "dims": list(i.dims),
                "grad": i.grad,
                "default": i.default,
            }
            for i in ir.inputs
        ],
        "params": [{"name": p.name, "default": p.default, "range": _range(p)} for p in ir.params],
        "choices": {c.name: {"value": c.value, "choices": list(c.choices)} for c in ir.choices},
        "terms": [t.name for t in ir.terms],
        "metrics": [m.name for m in ir.metrics],
        **_adaptive(ir),
    }


def _adaptive(ir: SpecIR) -> dict[str, Any]:
    """States (the layout of the states' vector), learned params, and the names of the
    values the graph reports after the metrics; nothing for a spec without them."""
    if not ir.states and not ir.learned:
        return {}
    reported = [s.name for s in ir.states if s.reported]
    reported += [p.name for p in ir.learned] + [e.name for e in ir.emas]
    return {
        "states": [{"name": s.name, "reported": s.reported} for s in ir.states],
        "learned": [{"name": p.name, "init": p.init} for p in ir.learned],
        "reported": reported,
    }


def _range(param: Any) -> list[Any]:
    rng = param.range
    if rng is None:
        return [-math.inf, math.inf, False, False]
    lo = rng.lo if not isinstance(rng.lo, str) else -math.inf
    hi = rng.hi if not isinstance(rng.hi, str) else math.inf
    return [float(lo), float(hi), rng.lo_closed, rng.hi_closed]
