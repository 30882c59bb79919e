"""Convexity by composition (CVXPY's disciplined convex programming) and smoothness.

Each op declares its curvature as a function of its arguments (an *atom*), and its
monotonicity in each argument, possibly depending on the argument's sign. The DCP
rule then decides the curvature of f(g1, …, gk): `compose`. It proves, never
guesses: UNKNOWN ("not proven") is always a sound answer.

Facts per op, for the op table (curvature over the whole domain unless noted; for a
reduction or a distribution op the argument is the whole reduced vector;
"lip": Lipschitz, the gradient stays bounded for unbounded arguments, as the
gradient-bounded property needs; "kinked at": where the op is not differentiable):

| op                 | curvature                    | monotone          | smooth           | lip |
|--------------------|------------------------------|-------------------|------------------|-----|
| neg                | affine                       | dec               | smooth           | yes |
| add / sub          | affine                       | inc,inc / inc,dec | smooth           | yes |
| mul, div, ^        | `product`/`quotient`/`power` |                   | smooth           | no  |
| exp, expm1         | convex                       | inc               | smooth           | no  |
| log, log1p, sqrt   | concave                      | inc               | smooth           | no  |
| log1mexp           | concave                      | dec               | smooth           | no  |
| abs                | convex                       | ABS_INCREASING    | kinked at 0      | yes |
| square             | convex                       | ABS_INCREASING    | smooth           | no  |
| relu               | convex                       | inc               | kinked at 0      | yes |
| softplus           | convex                       | inc               | smooth           | yes |
| logsigmoid         | concave                      | inc               | smooth           | yes |
| sigmoid, tanh      | rule `s_curve`               | inc               | smooth           | yes |
| sign, floor, round | unknown                      | inc               | zero_gradient    | —   |
| comparisons, logic | unknown                      | nonmonotone       | zero_gradient    | —   |
| max(a, b)          | convex                       | inc, inc          | kinked at a=b    | yes |
| min(a, b)          | concave                      | inc, inc          | kinked at a=b    | yes |
| clamp(x, lo, hi)   | rule `clamp`                 | inc, inc, inc     | kinked at lo, hi | yes |
| logaddexp          | convex                       | inc, inc          | smooth           | yes |
| xlogy(x, y)        | rule `xlogy`                 | —                 | smooth (y > 0)   | no  |
| where(c, a, b)     | rule `where`                 | —, inc, inc       | smooth (1)       | yes |
| detach             | constant                     | —                 | constant         | yes |
| cos (schedules)    | unknown                      | nonmonotone       | smooth           | yes |
| sum, mean, gather  | affine                       | inc               | smooth           | yes |
| max / min (reduce) | convex / concave             | inc               | kinked           | yes |
| logsumexp          | convex                       | inc               | smooth           | yes |
| log_softmax        | concave                      | nonmonotone       | smooth           | yes |
| softmax, entropy   | unknown                      | nonmonotone       | smooth           | yes |
| var                | convex                       | nonmonotone       | smooth           | no  |
| std                | convex                       | nonmonotone       | kinked (2)       | yes |
| count, argmax      | unknown                      | —                 | zero_gradient    | —   |
| one_hot, size      | constant                     | —                 | constant         | —   |

(1) the condition is usually zero_gradient, so `combine` makes the result kinked.
(2) not differentiable where all elements are equal (sqrt at 0).

Smoothness of a term combines bottom-up with `combine`; `CONSTANT` marks what does
not depend on a `grad` input (W400), `ZERO_GRADIENT` what depends on one only
through piecewise-constant ops (W401).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence

from lossdsl.analysis.intervals import Interval, log, reciprocal


class Curvature(enum.Enum):
    CONSTANT = "constant"
    AFFINE = "affine"
    CONVEX = "convex"
    CONCAVE = "concave"
    UNKNOWN = "unknown"

    @property
    def is_convex(self) -> bool:
        return self in (Curvature.CONSTANT, Curvature.AFFINE, Curvature.CONVEX)

    @property
    def is_concave(self) -> bool:
        return self in (Curvature.CONSTANT, Curvature.AFFINE, Curvature.CONCAVE)

    @property
    def is_affine(self) -> bool:
        return self in (Curvature.CONSTANT, Curvature.AFFINE)


CONSTANT = Curvature.CONSTANT
AFFINE = Curvature.AFFINE
CONVEX = Curvature.CONVEX
CONCAVE = Curvature.CONCAVE
UNKNOWN = Curvature.UNKNOWN


def _from_flags(convex: bool, concave: bool) -> Curvature:
    if convex and concave:
        return AFFINE
    return CONVEX if convex else CONCAVE if concave else UNKNOWN


class Monotonicity(enum.Enum):
    INCREASING = "increasing"
    DECREASING = "decreasing"
    NONMONOTONE = "nonmonotone"
    ABS_INCREASING = "increasing in |x|"  # abs, square: increasing for x ≥ 0, decreasing for x ≤ 0
    ABS_DECREASING = "decreasing in |x|"  # x^-2: decreasing for x > 0, increasing for x < 0

    def resolve(self, arg: Interval) -> Monotonicity:
        """Monotonicity over the argument's range: sign-dependent kinds become plain."""
        if self not in (Monotonicity.ABS_INCREASING, Monotonicity.ABS_DECREASING):
            return self
        up = self is Monotonicity.ABS_INCREASING
        if arg.is_nonneg():
            return INCREASING if up else DECREASING
        if arg.is_nonpos():
            return DECREASING if up else INCREASING
        return NONMONOTONE


INCREASING = Monotonicity.INCREASING
DECREASING = Monotonicity.DECREASING
NONMONOTONE = Monotonicity.NONMONOTONE
ABS_INCREASING = Monotonicity.ABS_INCREASING
ABS_DECREASING = Monotonicity.ABS_DECREASING


def _keeps_convex(arg: Curvature, mono: Monotonicity) -> bool:
    return (
        arg.is_affine
        or (arg is CONVEX and mono is INCREASING)
        or (arg is CONCAVE and mono is DECREASING)
    )


def _keeps_concave(arg: Curvature, mono: Monotonicity) -> bool:
    return (
        arg.is_affine
        or (arg is CONCAVE and mono is INCREASING)
        or (arg is CONVEX and mono is DECREASING)
    )


def compose(
    f: Curvature,
    monotonicity: Sequence[Monotonicity],
    args: Sequence[Curvature],
    intervals: Sequence[Interval],
) -> Curvature:
    """The DCP rule for f(g1, …, gk): convex when f is convex and each gi is affine, or
    convex where f increases in it, or concave where f decreases in it; concave mirrored;
    both: affine. Monotonicity is read over each argument's interval."""
    if not len(monotonicity) == len(args) == len(intervals):
        raise ValueError("compose needs one monotonicity and one interval per argument")
    if f is CONSTANT or all(a is CONSTANT for a in args):
        return CONSTANT
    monos = [m.resolve(x) for m, x in zip(monotonicity, intervals, strict=True)]
    pairs = list(zip(args, monos, strict=True))
    convex = f.is_convex and all(_keeps_convex(a, m) for a, m in pairs)
    concave = f.is_concave and all(_keeps_concave(a, m) for a, m in pairs)
    return _from_flags(convex, concave)


# ---- rules for the arithmetic that is not a plain atom ------------------------------


def join(*curvatures: Curvature) -> Curvature:
    """The curvature of a sum (and of anything that holds both kinds at once)."""
    if all(c is CONSTANT for c in curvatures):
        return CONSTANT
    return _from_flags(all(c.is_convex for c in curvatures), all(c.is_concave for c in curvatures))


add = join


def negate(c: Curvature) -> Curvature:
    return {CONVEX: CONCAVE, CONCAVE: CONVEX}.get(c, c)


def sub(a: Curvature, b: Curvature) -> Curvature:
    return join(a, negate(b))


def scale(c: Curvature, factor: Interval) -> Curvature:
    """c times a constant whose range is `factor`: the sign decides."""
    if factor == Interval.point(0) or factor.is_empty:
        return CONSTANT
    if factor.is_nonneg():
        return c
    if factor.is_nonpos():
        return negate(c)
    return c if c.is_affine else UNKNOWN


def product(a: Curvature, b: Curvature, a_range: Interval, b_range: Interval) -> Curvature:
    """a · b is DCP only when a factor is constant (x·x is not: use square)."""
    if a is CONSTANT:
        return scale(b, a_range)
    if b is CONSTANT:
        return scale(a, b_range)
    return UNKNOWN


def quotient(a: Curvature, b: Curvature, a_range: Interval, b_range: Interval) -> Curvature:
    """a / b: a constant denominator scales; a constant numerator over a one-signed
    denominator composes 1/x (convex decreasing for x > 0, concave decreasing for x < 0)."""
    if b is CONSTANT:
        return scale(a, reciprocal(b_range))
    if a is not CONSTANT:
        return UNKNOWN
    if b_range.is_positive():
        inner = compose(CONVEX, [DECREASING], [b], [b_range])
    elif b_range.is_negative():
        inner = compose(CONCAVE, [DECREASING], [b], [b_range])
    else:
        return UNKNOWN
    return scale(inner, a_range)


def power_atom(p: float, x: Interval) -> tuple[Curvature, Monotonicity]:
    """Curvature and monotonicity of t ↦ t^p over x (CVXPY's power atom)."""
    integer = math.isfinite(p) and float(p).is_integer()
    even, odd = integer and int(p) % 2 == 0, integer and int(p) % 2 == 1
    if p == 0:
        return CONSTANT, NONMONOTONE
    if p == 1:
        return AFFINE, INCREASING
    if p > 1 and even:
        return CONVEX, ABS_INCREASING
    if p < 0 and even:
        if x.is_positive() or x.is_negative():
            return CONVEX, ABS_DECREASING
        return UNKNOWN, NONMONOTONE
    if not integer and not x.is_nonneg():
        return UNKNOWN, NONMONOTONE  # the negative part is NaN
    if p > 1:  # odd integer, or fractional on x ≥ 0
        if x.is_nonneg():
            return CONVEX, INCREASING
        return (CONCAVE, INCREASING) if odd and x.is_nonpos() else (UNKNOWN, INCREASING)
    if 0 < p < 1:
        return CONCAVE, INCREASING
    # p < 0, odd or fractional: 1/x-like, a pole at 0
    if x.is_positive():
        return CONVEX, DECREASING
    if odd and x.is_negative():
        return CONCAVE, DECREASING
    return UNKNOWN, NONMONOTONE


def power(c: Curvature, p: float, x: Interval) -> Curvature:
    """g^p for a constant p, where g has curvature c and range x."""
    atom, mono = power_atom(p, x)
    if atom is CONSTANT:
        return CONSTANT
    return compose(atom, [mono], [c], [x])


def s_curve(c: Curvature, x: Interval) -> Curvature:
    """sigmoid, tanh: convex and increasing for x ≤ 0, concave and increasing for x ≥ 0."""
    if x.is_nonpos():
        return compose(CONVEX, [INCREASING], [c], [x])
    if x.is_nonneg():
        return compose(CONCAVE, [INCREASING], [c], [x])
    return CONSTANT if c is CONSTANT else UNKNOWN


_ANY = Interval.extended()  # for args whose monotonicity does not depend on their sign


def clamp(c: Curvature, lo: Curvature | None, hi: Curvature | None) -> Curvature:
    """clamp(x, lo, hi) = min(max(x, lo), hi): max is convex increasing, min concave
    increasing; both bounds present is neither (for non-constant x)."""
    result = c
    if lo is not None:
        result = compose(CONVEX, [INCREASING, INCREASING], [result, lo], [_ANY, _ANY])
    if hi is not None:
        result = compose(CONCAVE, [INCREASING, INCREASING], [result, hi], [_ANY, _ANY])
    return result


def xlogy(x: Curvature, y: Curvature, x_range: Interval, y_range: Interval) -> Curvature:
    """x·log(y): with x constant it is x times the concave increasing log(y); with y
    constant it is affine in x. Jointly it is neither."""
    if x is CONSTANT:
        return scale(compose(CONCAVE, [INCREASING], [y], [y_range]), x_range)
    if y is CONSTANT:
        return scale(x, log(y_range))
    return UNKNOWN


def where(condition: Curvature, a: Curvature, b: Curvature) -> Curvature:
    """A fixed condition picks, element by element, from a or b: both kinds must agree.
    A condition that moves with the variables makes a piecewise function: not proven."""
    return join(a, b) if condition is CONSTANT else UNKNOWN


# ---- smoothness --------------------------------------------------------------------


class Smoothness(enum.Enum):
    CONSTANT = "constant"  # does not depend on a grad input
    SMOOTH = "smooth"  # differentiable everywhere in its domain
    KINKED = "kinked"  # differentiable almost everywhere (abs, relu, clamp, min, max)
    ZERO_GRADIENT = "zero gradient"  # piecewise constant: comparisons, sign, floor, count
    NONE = "none"  # not differentiable (or not known to be)


_RANK = {
    Smoothness.SMOOTH: 0,
    Smoothness.KINKED: 1,
    Smoothness.ZERO_GRADIENT: 1,
    Smoothness.NONE: 2,
}


def combine(op: Smoothness, args: Sequence[Smoothness]) -> Smoothness:
    """The smoothness of op(args). An op that stops gradients (detach: CONSTANT) or is
    piecewise constant passes no gradient; a smooth or kinked op of only piecewise-
    constant arguments is piecewise constant too; otherwise the worst part wins, a
    piecewise-constant part counting as a kink (floor(x) + x is differentiable a.e.)."""
    live = [a for a in args if a is not Smoothness.CONSTANT]
    if op is Smoothness.CONSTANT or not live:
        return Smoothness.CONSTANT
    if op is Smoothness.ZERO_GRADIENT or all(a is Smoothness.ZERO_GRADIENT for a in live):
        return Smoothness.ZERO_GRADIENT
    worst = max([op, *live], key=_RANK.__getitem__)
    return Smoothness.KINKED if worst is Smoothness.ZERO_GRADIENT else worst


def smoothness_over(op: Smoothness, kinks: Sequence[float], arg: Interval) -> Smoothness:
    """A kinked op is smooth over an argument range that holds none of its kinks
    (relu of x in (0, inf) is smooth)."""
    if op is Smoothness.KINKED and not any(arg.contains(k) for k in kinks):
        return Smoothness.SMOOTH
    return op


def differentiable_label(s: Smoothness) -> str:
    """The `differentiable` property of LANGUAGE.md: yes / almost everywhere / no."""
    if s in (Smoothness.CONSTANT, Smoothness.SMOOTH):
        return "yes"
    return "no" if s is Smoothness.NONE else "almost everywhere"
