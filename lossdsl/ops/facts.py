"""What the analysis knows about an op: one `Facts` record per op-table entry.

Rules take the intervals (and curvatures) of the op's tensor arguments in the order the
node has them, and the node's attributes (`present` names the given optional arguments).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lossdsl.analysis import curvature as dcp
from lossdsl.analysis import intervals as iv
from lossdsl.analysis.curvature import Curvature, Monotonicity, Smoothness
from lossdsl.analysis.intervals import Interval

Attrs = dict[str, Any]
IntervalRule = Callable[[list[Interval], Attrs], Interval]
CurvatureRule = Callable[[list[Curvature], list[Interval], Attrs], Curvature]
Domain = Interval | Sequence[Interval]
DomainRule = Callable[[list[Interval], Attrs], dict[str, Domain]]
FLOAT32_EXP_LIMIT = 88.0  # exp(88.7) is the largest float32
FLOAT32_MAX = 3.4028234663852886e38


def _everything(args: list[Interval], attrs: Attrs) -> Interval:
    return Interval.extended()


def _unknown_curvature(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    return dcp.CONSTANT if all(c is dcp.CONSTANT for c in cs) else dcp.UNKNOWN


def _no_domain(args: list[Interval], attrs: Attrs) -> dict[str, Domain]:
    return {}


@dataclass(frozen=True)
class Facts:
    interval: IntervalRule = _everything  # image of the argument intervals (sound)
    domain: DomainRule = _no_domain  # per argument name: allowed values (W300 outside)
    curvature: CurvatureRule = _unknown_curvature  # DCP composition
    smooth: Smoothness = Smoothness.SMOOTH  # of the op itself
    kinks: tuple[float, ...] = ()  # where a kinked op is not differentiable (in its 1st arg)
    lipschitz: bool = False  # gradient bounded whatever the size of the arguments
    steep: Callable[[list[Interval]], bool] | None = None  # W302: an infinite slope in range
    steep_message: str | None = None  # W302 wording ({op}, {interval}); the default: infinite
    steep_fix: str | None = None  # W302 fix ({x}: the argument's text)
    overflows: Callable[[list[Interval], Interval], bool] | None = None  # W301 (args, result)
    precision_sensitive: bool = False  # W304: worth upcasting from bf16/f16
    continuous: bool = True  # False for step functions (floor, comparisons, …)
    fix: str | None = None  # W300 fix; `{x}` is the offending argument's text, `{0}`… all
    pole_message: str | None = None  # W300 wording when the argument can be exactly 0
    overflow_message: str | None = None  # W301 wording ({op}, {interval}, {result})
    overflow_fix: str | None = None
    # comparisons: the values of the left side for which the comparison holds (or not),
    # given the right side's interval; lets `where(x > 0, x, 1)` be known positive
    refine: Callable[[Interval, Interval, bool], Interval] | None = None
    # the image when both arguments are one value: x - x is 0, x·x is square(x)
    same_args: Callable[[Interval], Interval] | None = None
    keeps_value: bool = False  # returns its argument's value unchanged (detach)
    # whether the partial derivatives in the live arguments stay bounded, given the
    # arguments' fixed-value intervals (products and quotients; others use `lipschitz`)
    partials: Callable[[list[Interval], list[bool]], bool] | None = None
    selects: bool = False  # picks between branches by a condition (where): NaN grads leak


# ---- rule builders ---------------------------------------------------------------------


def image(fn: Callable[..., Interval]) -> IntervalRule:
    return lambda args, attrs: fn(*args)


def atom(curvature: Curvature, *monotone: Monotonicity) -> CurvatureRule:
    """A DCP atom: fixed curvature, a monotonicity per argument."""

    def rule(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
        monos = list(monotone[: len(cs)]) + [dcp.NONMONOTONE] * (len(cs) - len(monotone))
        return dcp.compose(curvature, monos, cs, ivs)

    return rule


def domain(**by_arg: Domain) -> DomainRule:
    return lambda args, attrs: dict(by_arg)


def given(attrs: Attrs, name: str) -> bool:
    return name in attrs.get("present", ())


def _masked(attrs: Attrs) -> bool:
    return given(attrs, "where")


# ---- arithmetic -----------------------------------------------------------------------


def product_curvature(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    return dcp.product(cs[0], cs[1], ivs[0], ivs[1])


def quotient_curvature(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    return dcp.quotient(cs[0], cs[1], ivs[0], ivs[1])


def power_image(args: list[Interval], attrs: Attrs) -> Interval:
    base, exponent = args
    if exponent.is_point:
        return iv.power(base, exponent.lo)
    return iv.power_interval(base, exponent)


def power_curvature(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    if cs[1] is dcp.CONSTANT and ivs[1].is_point:
        return dcp.power(cs[0], ivs[1].lo, ivs[0])
    return _unknown_curvature(cs, ivs, attrs)


def power_domain(args: list[Interval], attrs: Attrs) -> dict[str, Domain]:
    exponent = args[1]
    if not exponent.is_point:  # 0^p is fine for p ≥ 0 (0^0 = 1); a negative base is not
        return {"a": iv.DOMAIN_SQRT if exponent.is_nonneg() else iv.DOMAIN_LOG}
    p = exponent.lo
    integer = float(p).is_integer()
    if integer and p >= 0:
        return {}
    if integer:
        return {"a": iv.DOMAIN_NONZERO}
    return {"a": iv.DOMAIN_FRACTIONAL_POWER if p > 0 else iv.DOMAIN_LOG}


def power_steep(args: list[Interval]) -> bool:
    """x^p with 0 < p < 1 has an infinite slope at 0 (W302)."""
    exponent = args[1]
    return exponent.is_point and 0 < exponent.lo < 1 and args[0].contains(0)


def steep_at_zero(args: list[Interval]) -> bool:
    return args[0].contains(0)


def exp_overflows(args: list[Interval], result: Interval) -> bool:
    return args[0].hi > FLOAT32_EXP_LIMIT


def power_overflows(args: list[Interval], result: Interval) -> bool:
    """A bounded base raised past float32's largest value: the power itself overflows
    (`x ^ 2` of an unbounded x is no more a hazard than square(x))."""
    return result.hi > FLOAT32_MAX and args[0].is_bounded()


# ---- elementwise ------------------------------------------------------------------------


def clamp_image(args: list[Interval], attrs: Attrs) -> Interval:
    bounds = dict(zip([n for n in attrs["present"] if n != "x"], args[1:], strict=True))
    return iv.clamp(args[0], bounds.get("min"), bounds.get("max"))


def clamp_curvature(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    bounds = dict(zip([n for n in attrs["present"] if n != "x"], cs[1:], strict=True))
    return dcp.clamp(cs[0], bounds.get("min"), bounds.get("max"))


def s_curve(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    return dcp.s_curve(cs[0], ivs[0])


def xlogy_curvature(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    return dcp.xlogy(cs[0], cs[1], ivs[0], ivs[1])


def where_curvature(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    return dcp.where(cs[0], cs[1], cs[2])


def detached(cs: list[Curvature], ivs: list[Interval], attrs: Attrs) -> Curvature:
    return dcp.CONSTANT


# ---- reductions and distributions --------------------------------------------------------


def max_count(attrs: Attrs) -> int | None:
    """How many elements a reduction may see: unknown (None), or, when the analysis holds
    the sizes fixed (`_sizes_fixed`), some finite number; its value does not matter."""
    return FIXED_SIZE if attrs.get("_sizes_fixed") else None


FIXED_SIZE = 1_000_000


def sum_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.sum_of(args[0], min_count=0 if _masked(attrs) else 1, max_count=max_count(attrs))


def cumsum_image(args: list[Interval], attrs: Attrs) -> Interval:
    """Entry i sums i + 1 elements: between 1 and the size of the dim of them."""
    return iv.sum_of(args[0], min_count=1, max_count=max_count(attrs))


def mean_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.mean_of(args[0], may_be_empty=_masked(attrs))


def max_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.max_of(args[0], may_be_empty=_masked(attrs))


def min_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.min_of(args[0], may_be_empty=_masked(attrs))


def logsumexp_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.logsumexp_of(
        args[0], min_count=0 if _masked(attrs) else 1, max_count=max_count(attrs)
    )


def spread_image(root: bool) -> IntervalRule:
    def rule(args: list[Interval], attrs: Attrs) -> Interval:
        correction = int(attrs.get("correction", 0))
        return (iv.std_of if root else iv.var_of)(args[0], correction)

    return rule


def count_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.count_of(max_count=max_count(attrs))


def size_image(args: list[Interval], attrs: Attrs) -> Interval:
    top = max_count(attrs)
    return Interval(1, math.inf if top is None else top, True, top is not None)


def entropy_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.entropy_of(args[0], max_count(attrs))


def gather_image(args: list[Interval], attrs: Attrs) -> Interval:
    return args[0]


# ---- contraction and norms ----------------------------------------------------------------


def matmul_image(args: list[Interval], attrs: Attrs) -> Interval:
    """A sum over the contracted dim of products: bounded only where the count is."""
    return iv.sum_of(iv.mul(args[0], args[1]), min_count=1, max_count=max_count(attrs))


def index_image(args: list[Interval], attrs: Attrs) -> Interval:
    top = max_count(attrs)
    return Interval(0, math.inf if top is None else top - 1, True, top is not None)


def norm_image(args: list[Interval], attrs: Attrs) -> Interval:
    squares = iv.sum_of(iv.square(args[0]), min_count=0, max_count=max_count(attrs))
    return iv.sqrt(squares)


def normalize_image(args: list[Interval], attrs: Attrs) -> Interval:
    """Each entry keeps its sign and has magnitude at most 1."""
    x = args[0]
    if x.is_empty:
        return x
    return Interval(-1.0 if x.lo < 0 else 0.0, 1.0 if x.hi > 0 else 0.0, True, True)


# ---- schedules --------------------------------------------------------------------------
# `step` runs over [0, inf), so a schedule's progress u runs over [0, 1].


def linear_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.lerp(args[0], args[1], iv.UNIT)


def exponential_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.geometric(args[0], args[1], iv.UNIT)


def exponential_domain(args: list[Interval], attrs: Attrs) -> dict[str, Domain]:
    """start·(end/start)^u needs start and end nonzero and of one sign: each must lie on
    the side of 0 the other is on (either side when the other can be on both)."""
    positive = Interval(0, math.inf, False, False)
    negative = Interval(-math.inf, 0, False, False)

    def beside(other: Interval) -> Domain:
        if other.lo >= 0:
            return positive
        if other.hi <= 0:
            return negative
        return (negative, positive)

    return {"start": beside(args[1]), "end": beside(args[0])}


def piecewise_image(args: list[Interval], attrs: Attrs) -> Interval:
    values = attrs["values"]
    return Interval.closed(min(values), max(values))


def constant_image(args: list[Interval], attrs: Attrs) -> Interval:
    return args[0]


def unit_image(args: list[Interval], attrs: Attrs) -> Interval:
    return iv.UNIT


S = Smoothness


def _above(bound: float, closed: bool) -> Interval:
    return Interval(bound, math.inf, closed and math.isfinite(bound), False)


def _below(bound: float, closed: bool) -> Interval:
    return Interval(-math.inf, bound, False, closed and math.isfinite(bound))


def refine_greater(x: Interval, b: Interval, holds: bool) -> Interval:
    return _above(b.lo, False) if holds else _below(b.hi, True)


def refine_greater_equal(x: Interval, b: Interval, holds: bool) -> Interval:
    return _above(b.lo, True) if holds else _below(b.hi, False)


def refine_less(x: Interval, b: Interval, holds: bool) -> Interval:
    return _below(b.hi, False) if holds else _above(b.lo, True)


def refine_less_equal(x: Interval, b: Interval, holds: bool) -> Interval:
    return _below(b.hi, True) if holds else _above(b.lo, False)


def _away_from_zero(x: Interval) -> bool:
    closed = Interval(x.lo, x.hi, True, True)
    return not closed.contains(0)


def product_partials(fixed: list[Interval], live: list[bool]) -> bool:
    """d(ab)/da = b: bounded when the other factor is."""
    return all(fixed[1 - i].is_bounded() for i in range(2) if live[i])


def quotient_partials(fixed: list[Interval], live: list[bool]) -> bool:
    """d(a/b)/da = 1/b, d(a/b)/db = -a/b²: bounded with b away from 0 (and a bounded)."""
    numerator, denominator = fixed
    if not _away_from_zero(denominator):
        return False
    return not live[1] or numerator.is_bounded()
