"""What a schedule's arguments must be, checked where they are numbers.

A schedule that `check` accepts must give a finite value at every step. Arguments written
as numbers (or folded from numbers) are checked here, when the IR is built: a wrong one is
an error (E204 for a value, E103 for a wrong number of piecewise values). Arguments that
are params are checked against their declared ranges by the hazard pass (W300, from the
op table's domains) and at run time against the range itself.

The edge cases have a meaning rather than an error: `steps=0` is a schedule that is
already at its end value from `begin` on (`warmup(steps=0)` is no warmup), and a negative
`begin` starts the schedule part-way through (`u` is clamped to [0, 1] as always).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    code: str
    message: str
    arg: str | None  # the argument it is about (None: the call as a whole)
    fix: str | None = None


def schedule_problems(
    op: str, numbers: dict[str, float | None], attrs: dict[str, object]
) -> list[Problem]:
    """What is wrong with the schedule `op` given these arguments (None: not a number)."""
    found = [
        Problem("E204", f"`{name}` of {op}() must be a finite number, got {_show(value)}", name)
        for name, value in numbers.items()
        if value is not None and not math.isfinite(value)
    ]
    if found:
        return found
    steps = numbers.get("steps")
    if steps is not None and steps < 0:
        found.append(
            Problem(
                "E204",
                f"`steps` of {op}() counts steps and cannot be negative, got {_show(steps)}",
                "steps",
                fix="steps=0 is at the end value from the start",
            )
        )
    if op == "exponential":
        found += _geometric_problems(numbers.get("start"), numbers.get("end"))
    if op == "piecewise":
        found += _piecewise_problems(attrs["boundaries"], attrs["values"])  # type: ignore[arg-type]
    return found


def _geometric_problems(start: float | None, end: float | None) -> list[Problem]:
    fix = "use linear(…) or cosine(…), or start or end at a small value such as 1e-8"
    for name, value in (("start", start), ("end", end)):
        if value == 0:
            return [
                Problem(
                    "E204",
                    f"exponential() interpolates geometrically, start·(end/start)^u: "
                    f"`{name}` cannot be 0",
                    name,
                    fix=fix,
                )
            ]
    if start is not None and end is not None and (start > 0) != (end > 0):
        return [
            Problem(
                "E204",
                "exponential() interpolates geometrically, start·(end/start)^u: `start` and "
                f"`end` must have the same sign, got {_show(start)} and {_show(end)}",
                "end",
                fix=fix,
            )
        ]
    return []


def _piecewise_problems(boundaries: Sequence[float], values: Sequence[float]) -> list[Problem]:
    if len(values) != len(boundaries) + 1:
        wanted = ", ".join(f"v{i}" for i in range(len(boundaries) + 1))
        return [
            Problem(
                "E103",
                "piecewise() takes one value more than boundaries (the value before the "
                f"first boundary, then one from each boundary on): got {len(boundaries)} "
                f"boundar{'y' if len(boundaries) == 1 else 'ies'} and {len(values)} "
                f"value{'' if len(values) == 1 else 's'}",
                "values",
                fix=f"piecewise({_list(boundaries)}, [{wanted}])",
            )
        ]
    found = [
        Problem("E204", f"the {what} of piecewise() must be finite numbers", what)
        for what, numbers in (("boundaries", boundaries), ("values", values))
        if not all(math.isfinite(n) for n in numbers)
    ]
    if not found and any(b >= after for b, after in zip(boundaries, boundaries[1:], strict=False)):
        found.append(
            Problem(
                "E204",
                f"the boundaries of piecewise() must increase, got {_list(boundaries)}",
                "boundaries",
                fix=f"piecewise({_list(sorted(set(boundaries)))}, …)",
            )
        )
    return found


def _show(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return str(int(value)) if float(value).is_integer() else repr(value)


def _list(numbers: Sequence[float]) -> str:
    return "[" + ", ".join(_show(n) for n in numbers) + "]"
