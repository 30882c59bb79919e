"""Scalar meaning of ops, in plain Python floats: constant folding, schedule values for
`lossdsl explain`, and the ranges of schedules over steps. Never raises on numbers."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

Scalar = Callable[..., float]


def saturating(fn: Callable[..., float]) -> Scalar:
    """fn, with overflow as ±inf and points outside the domain as NaN."""

    def call(*args: float) -> float:
        try:
            return float(fn(*args))
        except OverflowError:
            return math.inf
        except (ValueError, ZeroDivisionError):
            return math.nan

    return call


def divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def power(a: float, b: float) -> float:
    try:
        result = a**b
    except OverflowError:
        return math.inf
    except ZeroDivisionError:
        return math.inf
    return result if isinstance(result, float | int) else math.nan


def log(x: float) -> float:
    if x == 0:
        return -math.inf
    return math.log(x) if x > 0 else math.nan


def log1mexp(x: float) -> float:
    if x > 0:
        return math.nan
    if x == 0:
        return -math.inf
    return math.log(-math.expm1(x)) if x > -math.log(2) else math.log1p(-math.exp(x))


def softplus(x: float) -> float:
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def logsigmoid(x: float) -> float:
    return -softplus(-x)


def xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 and not math.isnan(y) else x * log(y)


def logaddexp(a: float, b: float) -> float:
    high = max(a, b)
    if math.isinf(high):
        return high
    return high + math.log1p(math.exp(-abs(a - b)))


def progress(step: float, steps: float, begin: float) -> float:
    """u = clamp((step - begin) / steps, 0, 1). A span of no steps (steps ≤ 0) is over at
    once: 1 from `begin` on, 0 before it (warmup(steps=0) is no warmup, not 0/0)."""
    if not steps > 0:
        return 1.0 if step >= begin else 0.0
    return min(max((step - begin) / steps, 0.0), 1.0)


def linear(step: float, start: float, end: float, steps: float, begin: float = 0.0) -> float:
    return start + (end - start) * progress(step, steps, begin)


def cosine(step: float, start: float, end: float, steps: float, begin: float = 0.0) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * progress(step, steps, begin))) / 2


def exponential(step: float, start: float, end: float, steps: float, begin: float = 0.0) -> float:
    return start * power(divide(end, start), progress(step, steps, begin))


def warmup(step: float, steps: float) -> float:
    return progress(step, steps, 0.0)


def piecewise(step: float, boundaries: Sequence[float], values: Sequence[float]) -> float:
    value = values[0]
    for boundary, after in zip(boundaries, values[1:], strict=False):
        if step >= boundary:
            value = after
    return value


ELEMENTWISE: dict[str, Scalar] = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": divide,
    "pow": power,
    "neg": lambda a: -a,
    "lt": lambda a, b: float(a < b),
    "le": lambda a, b: float(a <= b),
    "gt": lambda a, b: float(a > b),
    "ge": lambda a, b: float(a >= b),
    "eq": lambda a, b: float(a == b),
    "ne": lambda a, b: float(a != b),
    "and": lambda a, b: float(bool(a) and bool(b)),
    "or": lambda a, b: float(bool(a) or bool(b)),
    "not": lambda a: float(not a),
    "exp": saturating(math.exp),
    "log": log,
    "log1p": lambda x: log(1 + x) if abs(x) > 1e-4 else saturating(math.log1p)(x),
    "expm1": saturating(math.expm1),
    "log1mexp": log1mexp,
    "sqrt": saturating(math.sqrt),
    "abs": abs,
    "square": saturating(lambda x: x * x),
    "sign": lambda x: float((x > 0) - (x < 0)),
    "floor": saturating(math.floor),
    "round": saturating(round),
    "sigmoid": saturating(sigmoid),
    "logsigmoid": saturating(logsigmoid),
    "softplus": saturating(softplus),
    "tanh": math.tanh,
    "relu": lambda x: max(x, 0.0),
    "cos": saturating(math.cos),
    "xlogy": xlogy,
    "logaddexp": logaddexp,
    "minimum": min,
    "maximum": max,
    "detach": lambda x: x,
}
