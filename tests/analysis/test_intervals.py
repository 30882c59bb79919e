"""Interval arithmetic: soundness by sampling, saturation, 0·inf, division, printing.

Soundness tests draw random intervals (infinite and open ends included), sample
points inside, apply the real function in float64 (numpy, written from the
formula) and check the result lies in the computed image, up to 1e-9 relative.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lossdsl.analysis import intervals as iv
from lossdsl.analysis.intervals import (
    EMPTY,
    ONE,
    UNIT,
    ZERO,
    Interval,
    closed,
    closed_open,
    everything,
    extended,
    nonneg,
    nonpos,
    open_,
    open_closed,
    point,
    positive,
)

inf = math.inf

# ---- helpers -----------------------------------------------------------------------

ENDS = st.one_of(
    st.sampled_from([-inf, inf, 0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 30.0, 700.0, -745.0, 1e3]),
    st.floats(-50, 50, allow_nan=False),
    st.floats(-1e8, 1e8, allow_nan=False),
)


@st.composite
def intervals(draw: st.DrawFn) -> Interval:
    a, b = sorted((draw(ENDS), draw(ENDS)))
    lo_c, hi_c = draw(st.booleans()), draw(st.booleans())
    if a == b:
        lo_c = hi_c = True
    return Interval(a, b, lo_c, hi_c)


def points_in(x: Interval, seed: int = 0) -> list[float]:
    """Points of x: its attained ends (±inf included), points just inside open ends,
    large values toward infinite ends, and random points."""
    if x.is_empty:
        return []
    rng = np.random.default_rng(seed)
    cands = [x.lo, x.hi]
    for end, inward in ((x.lo, inf), (x.hi, -inf)):
        if math.isfinite(end):
            cands += [math.nextafter(end, inward), end + (1e-9 if inward > 0 else -1e-9)]
    cands += [-1e300, -1e10, -800.0, -50.0, -1.0, 0.0, 1.0, 50.0, 800.0, 1e10, 1e300]
    lo, hi = max(x.lo, -1e6), min(x.hi, 1e6)
    if lo <= hi:
        cands += list(rng.uniform(lo, hi, 12)) + [(lo + hi) / 2]
    return [float(c) for c in cands if x.contains(c)]


def assert_inside(y: float, image: Interval, what: str, scale: float = 1.0) -> None:
    """y in image up to 1e-9 relative (to y, or to `scale`, the size of the inputs whose
    rounding y carries); an infinite y needs an infinite end there (an overflowing
    float64 reference is a finite real number, so the end may be open)."""
    if math.isnan(y):
        return  # outside the real domain: the hazard pass's business, not the interval's
    assert not image.is_empty, f"{what}: empty image, but {y} occurs"
    if math.isinf(y):
        assert (image.hi if y > 0 else image.lo) == y, f"{what}: {y} not in {image}"
        return
    tol = 1e-9 * max(1.0, abs(y), scale)
    assert image.lo - tol <= y <= image.hi + tol, f"{what}: {y!r} not in {image}"


def ref(f: Callable[..., np.ndarray]) -> Callable[..., float]:
    def call(*xs: float) -> float:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(f(*(np.float64(x) for x in xs)))

    return call


def _log1mexp(x: np.ndarray) -> np.ndarray:
    return np.log(-np.expm1(x))


UNARY: list[tuple[str, Callable[[Interval], Interval], Callable[..., float]]] = [
    ("exp", iv.exp, ref(np.exp)),
    ("log", iv.log, ref(np.log)),
    ("log1p", iv.log1p, ref(np.log1p)),
    ("expm1", iv.expm1, ref(np.expm1)),
    ("log1mexp", iv.log1mexp, ref(_log1mexp)),
    ("sqrt", iv.sqrt, ref(np.sqrt)),
    ("abs", iv.absolute, ref(np.abs)),
    ("square", iv.square, ref(np.square)),
    ("sign", iv.sign, ref(np.sign)),
    ("floor", iv.floor, ref(np.floor)),
    ("round", iv.rint, ref(np.round)),
    ("sigmoid", iv.sigmoid, ref(lambda x: 1 / (1 + np.exp(-x)))),
    ("logsigmoid", iv.logsigmoid, ref(lambda x: -np.logaddexp(0, -x))),
    ("softplus", iv.softplus, ref(lambda x: np.logaddexp(0, x))),
    ("tanh", iv.tanh, ref(np.tanh)),
    ("relu", iv.relu, ref(lambda x: np.maximum(x, 0))),
    ("cos", iv.cos, ref(np.cos)),
    ("neg", iv.neg, ref(np.negative)),
    ("xlogx", iv.xlogx, ref(lambda x: np.where(x == 0, 0.0, x * np.log(x)))),
]


def _div(a: float, b: float) -> float:
    return ref(np.divide)(a, b)


BINARY: list[tuple[str, Callable[[Interval, Interval], Interval], Callable[..., float]]] = [
    ("add", iv.add, ref(np.add)),
    ("sub", iv.sub, ref(np.subtract)),
    ("mul", iv.mul, ref(np.multiply)),
    ("min", iv.minimum, ref(np.minimum)),
    ("max", iv.maximum, ref(np.maximum)),
    ("logaddexp", iv.logaddexp, ref(np.logaddexp)),
    ("xlogy", iv.xlogy, ref(lambda x, y: np.where(x == 0, 0.0, x * np.log(y)))),
    ("lt", iv.less, ref(np.less)),
    ("le", iv.less_equal, ref(np.less_equal)),
    ("gt", iv.greater, ref(np.greater)),
    ("ge", iv.greater_equal, ref(np.greater_equal)),
    ("eq", iv.equal, ref(np.equal)),
    ("ne", iv.not_equal, ref(np.not_equal)),
]


# ---- soundness by sampling ------------------------------------------------------------


@pytest.mark.parametrize("name,image,f", UNARY, ids=[u[0] for u in UNARY])
@settings(max_examples=150, deadline=None)
@given(x=intervals())
def test_unary_image_contains_every_sampled_value(
    name: str, image: Callable[[Interval], Interval], f: Callable[..., float], x: Interval
) -> None:
    result = image(x)
    for t in points_in(x):
        assert_inside(f(t), result, f"{name}{x} at {t!r}")


@pytest.mark.parametrize("name,image,f", BINARY, ids=[b[0] for b in BINARY])
@settings(max_examples=100, deadline=None)
@given(a=intervals(), b=intervals())
def test_binary_image_contains_every_sampled_value(
    name: str,
    image: Callable[[Interval, Interval], Interval],
    f: Callable[..., float],
    a: Interval,
    b: Interval,
) -> None:
    result = image(a, b)
    for s in points_in(a, 1)[::2]:
        for t in points_in(b, 2)[::2]:
            assert_inside(f(s, t), result, f"{name}({a}, {b}) at {s!r}, {t!r}")


@settings(max_examples=200, deadline=None)
@given(a=intervals(), b=intervals())
def test_division_contains_every_quotient_with_zero_on_the_denominators_side(
    a: Interval, b: Interval
) -> None:
    # A zero denominator counts as +0 when b ≥ 0 and as -0 when b ≤ 0 (module notes).
    result = iv.div(a, b)
    for s in points_in(a, 1)[::2]:
        for t in points_in(b, 2)[::2]:
            t = -0.0 if t == 0 and b.lo < 0 and b.hi <= 0 else t
            assert_inside(_div(s, t), result, f"({a}) / ({b}) at {s!r}, {t!r}")


@pytest.mark.parametrize("p", [0, 1, 2, 3, 4, -1, -2, -3, 0.5, 1.5, -0.5, 2.5, 1e-3])
@settings(max_examples=80, deadline=None)
@given(x=intervals())
def test_power_contains_every_sampled_value(p: float, x: Interval) -> None:
    result = iv.power(x, p)
    for t in points_in(x):
        t = -0.0 if t == 0 and x.lo < 0 and x.hi <= 0 else t  # zero on x's side, as in div
        if p == int(p) or t >= 0:
            assert_inside(ref(np.power)(t, p), result, f"{x} ** {p} at {t!r}")


@settings(max_examples=100, deadline=None)
@given(x=intervals(), lo=intervals(), hi=intervals(), c=intervals())
def test_clamp_and_where_contain_every_sampled_value(
    x: Interval, lo: Interval, hi: Interval, c: Interval
) -> None:
    clamped = iv.clamp(x, lo, hi)
    chosen = iv.where(iv.less(c, ZERO), x, lo)
    for t in points_in(x)[::3]:
        for u in points_in(lo)[::4]:
            for v in points_in(hi)[::4]:
                assert_inside(min(max(t, u), v), clamped, f"clamp({x}, {lo}, {hi})")
            for s in points_in(c)[::4]:
                assert_inside(t if s < 0 else u, chosen, "where")


@settings(max_examples=150, deadline=None)
@given(x=intervals(), data=st.data())
def test_reductions_contain_their_value_for_any_count(x: Interval, data: st.DataObject) -> None:
    pts = [t for t in points_in(x) if math.isfinite(t) and abs(t) < 1e100]
    if not pts:
        return
    n = data.draw(st.integers(1, 6))
    v = np.array([data.draw(st.sampled_from(pts)) for _ in range(n)])
    big = float(np.abs(v).max())
    with np.errstate(all="ignore"):
        m = v.max()
        lse = m + np.log(np.sum(np.exp(v - m)))
        p = np.exp(v - lse)
        log_p0 = (v[0] - m) - np.log(np.sum(np.exp(v - m)))  # no cancellation at large v
        entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0))
        checks: list[tuple[float, Interval] | tuple[float, Interval, float]] = [
            (v.sum(), iv.sum_of(x)),
            (v.sum(), iv.sum_of(x, min_count=n, max_count=n)),
            (v.mean(), iv.mean_of(x)),
            (v.max(), iv.max_of(x)),
            (v.min(), iv.min_of(x)),
            (lse, iv.logsumexp_of(x)),
            (lse, iv.logsumexp_of(x, max_count=6)),
            (p[0], iv.softmax_of(x)),
            (log_p0, iv.log_softmax_of(x)),
            (log_p0, iv.log_softmax_of(x, max_count=6)),
            (entropy, iv.entropy_of(x)),
            (entropy, iv.entropy_of(x, max_count=6)),
            (v.var(), iv.var_of(x), big**2),  # the reference's rounding of the mean
            (v.std(), iv.std_of(x), big),
            (float(n), iv.count_of()),
            (float(v.argmax()), iv.argmax_of(6)),
        ]
        if n >= 2:
            checks += [(v.var(ddof=1), iv.var_of(x, 1), big**2)]
            checks += [(v.std(ddof=1), iv.std_of(x, 1), big)]
    for value, image, *scale in checks:
        assert_inside(float(value), image, f"reduction of {v} over {x}", *scale)


def test_masked_reductions_include_the_empty_selection() -> None:
    x = closed(2, 3)
    assert iv.sum_of(x, min_count=0) == closed_open(0, inf)
    assert iv.mean_of(x, may_be_empty=True) == closed(0, 3)
    assert iv.max_of(x, may_be_empty=True) == closed(-inf, 3)
    assert iv.min_of(x, may_be_empty=True) == closed(2, inf)
    assert iv.logsumexp_of(x, min_count=0).lo == -inf
    assert iv.count_of() == closed_open(0, inf)


@settings(max_examples=300, deadline=None)
@given(a=intervals(), b=intervals(), p=st.sampled_from([2, 3, -1, 0.5, -0.5, 1e300]))
def test_no_operation_raises_or_returns_nan_ends(a: Interval, b: Interval, p: float) -> None:
    results = [f(a) for _, f, _ in UNARY] + [f(a, b) for _, f, _ in BINARY]
    results += [iv.div(a, b), iv.power(a, p), iv.power_interval(a, b), iv.reciprocal(a)]
    results += [iv.sum_of(a), iv.logsumexp_of(a), iv.var_of(a), iv.std_of(a)]
    results += [iv.lerp(a, b, UNIT), iv.geometric(a, b, UNIT), iv.log_softmax_of(a, 3)]
    for r in results:
        assert not (math.isnan(r.lo) or math.isnan(r.hi))
        str(r)


# ---- saturation ------------------------------------------------------------------------


def test_exp_overflow_saturates_to_an_attained_inf() -> None:
    assert iv.exp(closed(0, 1000)) == Interval(1, inf, True, True)
    assert iv.exp(closed(1000, 2000)) == point(inf)


def test_exp_of_an_open_end_is_unbounded_but_finite() -> None:
    assert iv.exp(closed_open(0, 1000)) == closed_open(1, inf)
    assert iv.exp(everything()) == positive()
    assert iv.exp(nonpos()) == open_closed(0, 1)


def test_log_of_a_closed_zero_reaches_minus_inf() -> None:
    assert iv.log(closed(0, 1)) == Interval(-inf, 0, True, True)
    assert not iv.log(closed(0, 1)).is_finite()


def test_log_of_an_open_zero_is_unbounded_but_finite() -> None:
    assert iv.log(open_closed(0, 1)) == Interval(-inf, 0, False, True)
    assert iv.log(open_closed(0, 1)).is_finite()


def test_log_ignores_the_negative_part_which_is_nan() -> None:
    assert iv.log(closed(-1, 1)) == closed(-inf, 0)
    assert iv.log(closed(-2, -1)) == EMPTY


def test_huge_integer_constants_saturate() -> None:
    assert point(10**400) == point(inf)
    assert point(-(10**400)) == point(-inf)
    assert iv.power(point(10), 400) == point(inf)
    assert point(10) ** 400 == point(inf)
    assert iv.mul(point(1e300), point(1e300)) == point(inf)
    assert iv.add(point(1.7e308), point(1.7e308)) == point(inf)


def test_monotone_image_saturates_math_functions_that_raise() -> None:
    assert iv.monotone_image(math.exp, closed(0, 1000)).hi == inf
    assert iv.monotone_image(math.log, closed(0, 1)).lo == -inf
    assert iv.monotone_image(math.exp, closed(0, 1)) == closed(1, math.e)


def test_monotone_image_of_a_decreasing_function_swaps_the_ends() -> None:
    assert iv.monotone_image(lambda t: -t, closed_open(1, 2), increasing=False) == Interval(
        -2, -1, False, True
    )


def test_flattened_images_stay_nonempty() -> None:
    assert iv.tanh(open_(20, 30)) == point(1)  # tanh(20) rounds to 1.0
    assert iv.exp(open_(1000, 2000)) == point(inf)


# ---- 0 · inf ---------------------------------------------------------------------------


def test_zero_times_unbounded_is_zero_at_the_corner_but_keeps_all_products() -> None:
    assert iv.mul(closed(0, 1), everything()) == everything()
    assert iv.mul(closed(0, 1), closed_open(1, inf)) == closed_open(0, inf)
    assert iv.mul(point(0), extended()) == ZERO


def test_a_closed_zero_factor_makes_zero_attained() -> None:
    assert iv.mul(closed(0, 1), open_(0, 1)) == closed_open(0, 1)
    assert iv.mul(open_closed(0, 1), open_(0, 1)) == open_(0, 1)


def test_products_of_open_zero_and_infinity_stay_open() -> None:
    assert iv.mul(open_closed(0, 1), closed_open(1, inf)) == positive()


def test_xlogy_of_zero_is_zero_even_at_log_zero() -> None:
    assert iv.xlogy(ZERO, closed(0, 1)) == ZERO
    assert iv.xlogy(closed(0, 1), closed(0, 1)) == closed(-inf, 0)


def test_xlogx_is_bounded_below_by_minus_one_over_e() -> None:
    r = iv.xlogx(closed(0, 1))
    assert r.hi == 0 and r.lo == pytest.approx(-1 / math.e)


# ---- division ----------------------------------------------------------------------------


def test_division_by_a_nonnegative_interval_with_zero_reaches_inf() -> None:
    assert iv.div(closed(1, 2), closed(0, 1)) == Interval(1, inf, True, True)
    assert iv.div(closed(1, 2), open_closed(0, 1)) == closed_open(1, inf)


def test_division_by_a_nonpositive_interval_with_zero_reaches_minus_inf() -> None:
    assert iv.div(closed(1, 2), closed(-1, 0)) == closed(-inf, -1)


def test_division_by_an_interval_straddling_zero_is_everything() -> None:
    assert iv.div(closed(1, 2), closed(-1, 1)) == extended()
    assert iv.reciprocal(everything()) == extended()


def test_division_by_a_positive_interval_is_exact() -> None:
    assert iv.div(closed(1, 2), closed(2, 4)) == closed(0.25, 1)
    assert closed(1, 2) / 2 == closed(0.5, 1)
    assert 1 / closed_open(1, inf) == open_closed(0, 1)


# ---- powers ------------------------------------------------------------------------------


def test_even_powers_see_the_magnitude() -> None:
    assert iv.square(closed(-2, 3)) == closed(0, 9)
    assert iv.square(open_(-3, 2)) == closed_open(0, 9)
    assert iv.power(closed(-2, -1), 4) == closed(1, 16)


def test_odd_and_negative_powers() -> None:
    assert iv.power(closed(-2, 3), 3) == closed(-8, 27)
    assert iv.power(closed(1, 2), -1) == closed(0.5, 1)
    assert iv.power(closed(-2, 3), -1) == extended()
    assert iv.power(closed(-2, -1), -2) == closed(0.25, 1)
    assert iv.power(everything(), 0) == ONE


def test_fractional_powers_keep_the_real_part() -> None:
    assert iv.power(closed(-4, 4), 0.5) == closed(0, 2)
    assert iv.power(open_closed(0, 4), -0.5) == closed_open(0.5, inf)
    assert iv.power(closed(0, 4), -0.5) == closed(0.5, inf)


def test_power_with_a_varying_exponent() -> None:
    assert iv.power_interval(closed(1, 2), closed(1, 2)) == closed(1, 4)
    assert iv.power_interval(closed(-1, 2), closed(1, 2)) == extended()


# ---- open/closed tracking of the elementwise ops -------------------------------------------


def test_squashing_functions_keep_open_limits() -> None:
    assert iv.sigmoid(everything()) == open_(0, 1)
    assert iv.tanh(everything()) == open_(-1, 1)
    assert iv.softplus(everything()) == positive()
    assert iv.logsigmoid(everything()) == iv.negative()
    assert iv.log1mexp(nonpos()) == Interval(-inf, 0, True, False)


def test_relu_and_clamp_attain_their_flat_parts() -> None:
    assert iv.relu(open_closed(-1, 1)) == closed(0, 1)
    assert iv.relu(open_(0, 1)) == open_(0, 1)
    assert iv.clamp(everything(), point(1e-8)) == closed_open(1e-8, inf)
    assert iv.clamp(everything(), point(0), point(1)) == UNIT
    assert iv.minimum(open_(0, 1), ZERO) == ZERO


def test_abs_of_an_interval_across_zero() -> None:
    assert iv.absolute(open_(-1, 2)) == closed_open(0, 2)
    assert iv.absolute(open_(-3, -1)) == open_(1, 3)


def test_step_functions_are_closed() -> None:
    assert iv.floor(open_(0.5, 2.5)) == closed(0, 2)
    assert iv.floor(everything()) == everything()
    assert iv.rint(closed(0.5, 2.5)) == closed(0, 2)  # halves to even
    assert iv.sign(closed(0, 3)) == UNIT
    assert iv.sign(open_(0, 3)) == ONE
    assert iv.sign(everything()) == closed(-1, 1)


def test_cos_finds_the_extremes_inside() -> None:
    assert iv.cos(closed(0, math.pi)) == closed(-1, 1)
    assert iv.cos(closed(0, 1)) == closed(math.cos(1), 1)
    assert iv.cos(closed(1, 2)) == closed(math.cos(2), math.cos(1))
    assert iv.cos(nonneg()) == closed(-1, 1)


def test_logaddexp_is_open_where_an_argument_is() -> None:
    assert iv.logaddexp(everything(), ZERO) == positive()
    assert iv.logaddexp(ZERO, ZERO) == point(math.log(2))


# ---- comparisons, where, logic ---------------------------------------------------------


def test_comparisons_are_decided_when_the_ranges_do_not_overlap() -> None:
    assert iv.less(closed(0, 1), open_(1, 2)) == ONE
    assert iv.less(closed(0, 1), closed(1, 2)) == UNIT
    assert iv.less(closed(1, 2), closed(0, 1)) == ZERO
    assert iv.less_equal(closed(0, 1), closed(1, 2)) == ONE
    assert iv.greater(positive(), ZERO) == ONE
    assert iv.equal(closed(0, 1), closed(2, 3)) == ZERO
    assert iv.equal(point(2), point(2)) == ONE
    assert iv.not_equal(point(2), point(2)) == ZERO


def test_where_takes_the_decided_branch_or_the_hull() -> None:
    assert iv.where(ONE, closed(0, 1), closed(5, 6)) == closed(0, 1)
    assert iv.where(ZERO, closed(0, 1), closed(5, 6)) == closed(5, 6)
    assert iv.where(UNIT, closed(0, 1), closed(5, 6)) == closed(0, 6)


def test_logic_on_bools() -> None:
    assert iv.logical_not(ONE) == ZERO and iv.logical_not(UNIT) == UNIT
    assert iv.logical_and(ZERO, UNIT) == ZERO and iv.logical_and(ONE, ONE) == ONE
    assert iv.logical_or(ONE, UNIT) == ONE and iv.logical_or(ZERO, ZERO) == ZERO


# ---- sets, predicates, domains ----------------------------------------------------------


def test_empty_intervals_normalise_to_one_value() -> None:
    assert Interval(1, 0) == EMPTY
    assert Interval(1, 1, False, True) == EMPTY
    assert EMPTY.is_empty and not ZERO.is_empty
    assert iv.exp(EMPTY) == EMPTY and iv.add(EMPTY, ONE) == EMPTY


def test_hull_and_intersect_track_closed_ends() -> None:
    assert iv.hull(closed_open(0, 1), open_closed(1, 2)) == closed(0, 2)
    assert iv.hull(open_(0, 1), closed(0, 0.5)) == closed_open(0, 1)
    assert iv.intersect(closed(0, 1), open_(0.5, 2)) == open_closed(0.5, 1)
    assert iv.intersect(closed(0, 1), closed(2, 3)) == EMPTY
    assert closed(0, 1) | closed(2, 3) == closed(0, 3)


def test_predicates() -> None:
    x = closed_open(0, inf)
    assert x.contains(0) and 5 in x and inf not in x and -1 not in x
    assert x.contains_zero and not positive().contains_zero
    assert x.is_finite() and not closed(0, inf).is_finite()
    assert x.is_bounded_below() and not x.is_bounded_above() and not x.is_bounded()
    assert open_(0, 1).is_subset(closed(0, 1)) and not closed(0, 1).is_subset(open_(0, 1))
    assert EMPTY.is_subset(ZERO)
    assert positive().is_positive() and nonpos().is_nonpos() and not nonneg().is_positive()


@pytest.mark.parametrize(
    "argument,domain,outside",
    [
        (closed(0, 1), iv.DOMAIN_LOG, True),
        (open_closed(0, 1), iv.DOMAIN_LOG, False),
        (closed(1e-8, inf), iv.DOMAIN_LOG, False),
        (closed(-1, 1), iv.DOMAIN_SQRT, True),
        (nonneg(), iv.DOMAIN_SQRT, False),
        (closed(-1, 0), iv.DOMAIN_LOG1P, True),
        (open_closed(-1, 0), iv.DOMAIN_LOG1P, False),
        (nonpos(), iv.DOMAIN_LOG1MEXP, True),
        (iv.negative(), iv.DOMAIN_LOG1MEXP, False),
        (closed(-1, 1), iv.DOMAIN_NONZERO, True),
        (closed(1, 2), iv.DOMAIN_NONZERO, False),
        (closed(-2, -1), iv.DOMAIN_NONZERO, False),
        (closed_open(0, 1), iv.DOMAIN_NONZERO, True),
        (EMPTY, iv.DOMAIN_LOG, False),
        (closed(0, 2), [closed(0, 1), open_closed(1, 3)], False),
    ],
)
def test_admits_outside_finds_values_outside_the_domain(
    argument: Interval, domain: Interval | list[Interval], outside: bool
) -> None:
    assert iv.admits_outside(argument, domain) is outside


# ---- printing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "interval,text",
    [
        (nonneg(), "[0, inf)"),
        (nonpos(), "(-inf, 0]"),
        (closed(0, 1), "[0, 1]"),
        (everything(), "(-inf, inf)"),
        (extended(), "[-inf, inf]"),
        (open_closed(0.2, 2.5), "(0.2, 2.5]"),
        (closed(1e-8, 1e20), "[1e-08, 1e+20]"),
        (closed(-1 / 3, 1 / 3), "[-0.333334, 0.333334]"),  # rounded outward
        (point(-0.0), "[0, 0]"),
        (EMPTY, "empty"),
    ],
)
def test_str_uses_interval_notation(interval: Interval, text: str) -> None:
    assert str(interval) == text


@settings(max_examples=200, deadline=None)
@given(x=intervals())
def test_printed_bounds_still_contain_the_interval(x: Interval) -> None:
    if not x.is_empty:
        assert x.is_subset(Interval.parse(str(x)))


def test_parse_reads_interval_notation() -> None:
    assert Interval.parse("[0, inf)") == nonneg()
    assert Interval.parse("(-inf, 1e-8]") == Interval(-inf, 1e-8, False, True)
    with pytest.raises(ValueError):
        Interval.parse("0, 1")


# ---- schedules ---------------------------------------------------------------------------


def test_lerp_stays_between_start_and_end() -> None:
    assert iv.lerp(point(0.01), point(0.0), UNIT) == closed(0, 0.01)
    # The formula start + (end - start)·t evaluated naively would give [-1, 2].
    assert iv.lerp(UNIT, UNIT, UNIT) == UNIT


def test_geometric_schedule_between_positive_ends() -> None:
    r = iv.geometric(point(1), point(0.01), UNIT)
    assert r.lo == pytest.approx(0.01) and r.hi == pytest.approx(1)
    assert iv.geometric(point(1), point(0), UNIT) == extended()


def test_elementwise_table_covers_the_language_ops() -> None:
    ops = "exp log log1p expm1 log1mexp sqrt abs square sign floor round sigmoid logsigmoid"
    ops += " softplus tanh relu xlogy logaddexp clamp min max where detach"
    assert set(ops.split()) <= set(iv.ELEMENTWISE)
