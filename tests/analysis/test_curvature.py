"""DCP composition and smoothness: known answers, and random expressions whose
reported curvature is checked numerically (midpoint convexity in float64)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from lossdsl.analysis import curvature as cv
from lossdsl.analysis import intervals as iv
from lossdsl.analysis.curvature import (
    ABS_DECREASING,
    ABS_INCREASING,
    AFFINE,
    CONCAVE,
    CONSTANT,
    CONVEX,
    DECREASING,
    INCREASING,
    NONMONOTONE,
    UNKNOWN,
    Smoothness,
    compose,
)
from lossdsl.analysis.intervals import closed, everything, negative, nonneg, nonpos, point, positive

ANY = everything()

# ---- the DCP rule --------------------------------------------------------------------


def test_square_of_affine_is_convex() -> None:
    assert compose(CONVEX, [ABS_INCREASING], [AFFINE], [ANY]) is CONVEX
    assert cv.power(AFFINE, 2, ANY) is CONVEX


def test_square_of_convex_needs_a_nonnegative_argument() -> None:
    assert compose(CONVEX, [ABS_INCREASING], [CONVEX], [positive()]) is CONVEX
    assert compose(CONVEX, [ABS_INCREASING], [CONVEX], [ANY]) is UNKNOWN
    assert compose(CONVEX, [ABS_INCREASING], [CONCAVE], [nonpos()]) is CONVEX


def test_sqrt_and_log_of_affine_are_concave() -> None:
    assert compose(CONCAVE, [INCREASING], [AFFINE], [nonneg()]) is CONCAVE
    assert cv.power(AFFINE, 0.5, nonneg()) is CONCAVE
    assert compose(CONCAVE, [INCREASING], [CONCAVE], [positive()]) is CONCAVE


def test_logsumexp_atom_is_convex_but_log_of_sum_of_exp_is_not_provable() -> None:
    assert compose(CONVEX, [INCREASING], [AFFINE], [ANY]) is CONVEX  # logsumexp(x)
    sum_exp = cv.add(compose(CONVEX, [INCREASING], [AFFINE], [ANY]))
    assert compose(CONCAVE, [INCREASING], [sum_exp], [positive()]) is UNKNOWN  # log(sum(exp))


def test_negation_swaps_convex_and_concave() -> None:
    assert cv.negate(CONVEX) is CONCAVE and cv.negate(CONCAVE) is CONVEX
    assert cv.negate(AFFINE) is AFFINE and cv.negate(UNKNOWN) is UNKNOWN
    assert cv.sub(CONVEX, CONCAVE) is CONVEX
    assert cv.sub(CONVEX, CONVEX) is UNKNOWN


def test_exp_of_concave_is_not_proven_but_exp_of_convex_is_convex() -> None:
    assert compose(CONVEX, [INCREASING], [CONCAVE], [ANY]) is UNKNOWN
    assert compose(CONVEX, [INCREASING], [CONVEX], [ANY]) is CONVEX


def test_decreasing_convex_function_of_concave_is_convex() -> None:
    # 1/x on x > 0 of a concave positive argument, e.g. 1/sqrt(x)
    assert compose(CONVEX, [DECREASING], [CONCAVE], [positive()]) is CONVEX
    assert compose(CONVEX, [DECREASING], [CONVEX], [positive()]) is UNKNOWN


def test_constant_arguments_and_constant_functions_give_constants() -> None:
    assert compose(CONVEX, [NONMONOTONE], [CONSTANT], [ANY]) is CONSTANT
    assert compose(CONSTANT, [INCREASING], [CONVEX], [ANY]) is CONSTANT
    assert compose(CONVEX, [NONMONOTONE, INCREASING], [CONSTANT, CONVEX], [ANY, ANY]) is CONVEX


def test_affine_function_of_affine_is_affine_and_of_convex_follows_monotonicity() -> None:
    assert compose(AFFINE, [INCREASING, DECREASING], [AFFINE, CONSTANT], [ANY, ANY]) is AFFINE
    assert compose(AFFINE, [INCREASING, DECREASING], [CONVEX, CONCAVE], [ANY, ANY]) is CONVEX
    assert compose(AFFINE, [DECREASING], [CONVEX], [ANY]) is CONCAVE


def test_unknown_function_is_unknown_unless_its_arguments_are_constant() -> None:
    assert compose(UNKNOWN, [INCREASING], [AFFINE], [ANY]) is UNKNOWN
    assert compose(UNKNOWN, [INCREASING], [CONSTANT], [ANY]) is CONSTANT


def test_compose_rejects_mismatched_argument_lists() -> None:
    with pytest.raises(ValueError):
        compose(CONVEX, [INCREASING], [AFFINE, AFFINE], [ANY])


def test_sign_dependent_monotonicity_resolves_over_the_argument_range() -> None:
    assert ABS_INCREASING.resolve(nonneg()) is INCREASING
    assert ABS_INCREASING.resolve(nonpos()) is DECREASING
    assert ABS_INCREASING.resolve(ANY) is NONMONOTONE
    assert ABS_DECREASING.resolve(positive()) is DECREASING
    assert ABS_DECREASING.resolve(negative()) is INCREASING
    assert INCREASING.resolve(ANY) is INCREASING


# ---- sums, scaling, products, quotients, powers ---------------------------------------


def test_join_is_the_curvature_of_a_sum() -> None:
    assert cv.join(CONVEX, AFFINE, CONSTANT) is CONVEX
    assert cv.join(CONCAVE, CONCAVE) is CONCAVE
    assert cv.join(CONVEX, CONCAVE) is UNKNOWN
    assert cv.join(AFFINE, CONSTANT) is AFFINE
    assert cv.join(CONSTANT, CONSTANT) is CONSTANT


def test_scaling_by_a_sign_known_constant() -> None:
    assert cv.scale(CONVEX, closed(0.5, 2)) is CONVEX
    assert cv.scale(CONVEX, closed(-2, -0.5)) is CONCAVE
    assert cv.scale(CONVEX, closed(-1, 1)) is UNKNOWN
    assert cv.scale(AFFINE, closed(-1, 1)) is AFFINE
    assert cv.scale(UNKNOWN, point(0)) is CONSTANT


def test_products_are_dcp_only_with_a_constant_factor() -> None:
    assert cv.product(CONSTANT, CONVEX, nonneg(), ANY) is CONVEX
    assert cv.product(CONVEX, CONSTANT, ANY, nonpos()) is CONCAVE
    assert cv.product(AFFINE, AFFINE, ANY, ANY) is UNKNOWN  # x·x is not DCP: use square


def test_quotients() -> None:
    assert cv.quotient(CONVEX, CONSTANT, ANY, closed(2, 4)) is CONVEX
    assert cv.quotient(CONVEX, CONSTANT, ANY, closed(-4, -2)) is CONCAVE
    assert cv.quotient(CONSTANT, AFFINE, point(1), positive()) is CONVEX  # 1/x, x > 0
    assert cv.quotient(CONSTANT, AFFINE, point(-1), positive()) is CONCAVE
    assert cv.quotient(CONSTANT, CONCAVE, point(1), positive()) is CONVEX
    assert cv.quotient(CONSTANT, AFFINE, point(1), negative()) is CONCAVE
    assert cv.quotient(CONSTANT, AFFINE, point(1), ANY) is UNKNOWN
    assert cv.quotient(AFFINE, AFFINE, ANY, positive()) is UNKNOWN


@pytest.mark.parametrize(
    "p,x,expected",
    [
        (0, ANY, (CONSTANT, NONMONOTONE)),
        (1, ANY, (AFFINE, INCREASING)),
        (2, ANY, (CONVEX, ABS_INCREASING)),
        (3, nonneg(), (CONVEX, INCREASING)),
        (3, nonpos(), (CONCAVE, INCREASING)),
        (3, ANY, (UNKNOWN, INCREASING)),
        (1.5, nonneg(), (CONVEX, INCREASING)),
        (1.5, ANY, (UNKNOWN, NONMONOTONE)),
        (0.5, nonneg(), (CONCAVE, INCREASING)),
        (-1, positive(), (CONVEX, DECREASING)),
        (-1, negative(), (CONCAVE, DECREASING)),
        (-1, ANY, (UNKNOWN, NONMONOTONE)),
        (-2, negative(), (CONVEX, ABS_DECREASING)),
        (-0.5, positive(), (CONVEX, DECREASING)),
    ],
)
def test_power_atom_follows_cvxpy(p: float, x: iv.Interval, expected: tuple) -> None:
    assert cv.power_atom(p, x) == expected


def test_s_curves_are_convex_left_of_zero_and_concave_right_of_it() -> None:
    assert cv.s_curve(AFFINE, nonpos()) is CONVEX
    assert cv.s_curve(AFFINE, nonneg()) is CONCAVE
    assert cv.s_curve(AFFINE, ANY) is UNKNOWN
    assert cv.s_curve(CONSTANT, ANY) is CONSTANT


def test_clamp_with_one_bound_is_convex_or_concave_and_with_both_is_neither() -> None:
    assert cv.clamp(AFFINE, CONSTANT, None) is CONVEX
    assert cv.clamp(AFFINE, None, CONSTANT) is CONCAVE
    assert cv.clamp(AFFINE, CONSTANT, CONSTANT) is UNKNOWN
    assert cv.clamp(CONSTANT, CONSTANT, CONSTANT) is CONSTANT


def test_where_with_a_fixed_condition_joins_its_branches() -> None:
    assert cv.where(CONSTANT, CONVEX, AFFINE) is CONVEX
    assert cv.where(CONSTANT, CONVEX, CONCAVE) is UNKNOWN
    assert cv.where(UNKNOWN, CONVEX, CONVEX) is UNKNOWN  # huber written with where


def test_xlogy_with_one_constant_argument() -> None:
    assert cv.xlogy(CONSTANT, AFFINE, nonneg(), positive()) is CONCAVE
    assert cv.xlogy(CONSTANT, AFFINE, nonpos(), positive()) is CONVEX
    assert cv.xlogy(AFFINE, CONSTANT, ANY, positive()) is AFFINE
    assert cv.xlogy(AFFINE, AFFINE, ANY, positive()) is UNKNOWN


# ---- known losses, built the way the pass will build them -----------------------------


def test_mse_is_convex() -> None:
    residual = cv.sub(AFFINE, CONSTANT)  # pred - target
    assert cv.add(cv.power(residual, 2, ANY)) is CONVEX  # mean(square(...))


def test_l1_is_convex() -> None:
    assert compose(CONVEX, [ABS_INCREASING], [cv.sub(AFFINE, CONSTANT)], [ANY]) is CONVEX


def test_cross_entropy_is_convex() -> None:
    log_softmax = compose(CONCAVE, [NONMONOTONE], [AFFINE], [ANY])
    gathered = compose(AFFINE, [INCREASING], [log_softmax], [nonpos()])
    assert cv.negate(gathered) is CONVEX


def test_bce_with_logits_is_convex() -> None:
    softplus = compose(CONVEX, [INCREASING], [AFFINE], [ANY])
    assert cv.sub(softplus, cv.product(CONSTANT, AFFINE, iv.UNIT, ANY)) is CONVEX


def test_ppo_clipped_surrogate_is_not_proven_convex() -> None:
    ratio = compose(CONVEX, [INCREASING], [AFFINE], [ANY])  # exp(lp - old)
    advantage = iv.everything()  # sign unknown
    surr1 = cv.product(ratio, CONSTANT, positive(), advantage)
    clipped = cv.clamp(ratio, CONSTANT, CONSTANT)
    surr2 = cv.product(clipped, CONSTANT, positive(), advantage)
    term = cv.negate(compose(CONCAVE, [INCREASING, INCREASING], [surr1, surr2], [ANY, ANY]))
    assert term is UNKNOWN


# ---- random expressions: a reported curvature must hold numerically ----------------------


@dataclass
class Expr:
    f: Callable[[np.ndarray], np.ndarray]
    range: iv.Interval
    curvature: cv.Curvature
    text: str


X_RANGE = closed(-3, 3)


def _atoms() -> list[tuple[str, Callable, Callable, cv.Curvature, cv.Monotonicity, iv.Interval]]:
    # name, numpy function, interval image, curvature, monotonicity, domain
    return [
        ("exp", np.exp, iv.exp, CONVEX, INCREASING, ANY),
        ("log", np.log, iv.log, CONCAVE, INCREASING, positive()),
        ("sqrt", np.sqrt, iv.sqrt, CONCAVE, INCREASING, nonneg()),
        ("abs", np.abs, iv.absolute, CONVEX, ABS_INCREASING, ANY),
        ("square", np.square, iv.square, CONVEX, ABS_INCREASING, ANY),
        ("softplus", lambda x: np.logaddexp(0, x), iv.softplus, CONVEX, INCREASING, ANY),
        ("logsigmoid", lambda x: -np.logaddexp(0, -x), iv.logsigmoid, CONCAVE, INCREASING, ANY),
        ("relu", lambda x: np.maximum(x, 0), iv.relu, CONVEX, INCREASING, ANY),
        ("neg", np.negative, iv.neg, AFFINE, DECREASING, ANY),
        ("inv", lambda x: 1 / x, iv.reciprocal, CONVEX, DECREASING, positive()),
        ("log1mexp", lambda x: np.log(-np.expm1(x)), iv.log1mexp, CONCAVE, DECREASING, negative()),
    ]


def random_expr(rng: np.random.Generator, depth: int) -> Expr:
    if depth == 0 or rng.random() < 0.2:
        a, b = (float(v) for v in rng.uniform(-2, 2, 2))
        if rng.random() < 0.3:
            return Expr(lambda x: np.full_like(x, b), point(b), CONSTANT, f"{b:.2f}")
        affine_range = iv.add(iv.mul(point(a), X_RANGE), point(b))
        return Expr(lambda x: a * x + b, affine_range, AFFINE, f"({a:.2f}x+{b:.2f})")
    kind = rng.integers(0, 4)
    p, q = random_expr(rng, depth - 1), random_expr(rng, depth - 1)
    if kind == 0:  # a sum
        return Expr(
            lambda x: p.f(x) + q.f(x),
            iv.add(p.range, q.range),
            cv.add(p.curvature, q.curvature),
            f"({p.text} + {q.text})",
        )
    if kind == 1:  # a scaled expression
        k = float(rng.uniform(-2, 2))
        return Expr(
            lambda x: k * p.f(x),
            iv.mul(point(k), p.range),
            cv.scale(p.curvature, point(k)),
            f"{k:.2f}*{p.text}",
        )
    if kind == 2:  # max / min / logaddexp of two
        pairs: list[tuple[str, Callable[..., np.ndarray], Callable[..., iv.Interval], cv.Curvature]]
        pairs = [
            ("max", np.maximum, iv.maximum, CONVEX),
            ("min", np.minimum, iv.minimum, CONCAVE),
            ("logaddexp", np.logaddexp, iv.logaddexp, CONVEX),
        ]
        name, f2, image2, curv2 = pairs[rng.integers(0, 3)]
        out = compose(curv2, [INCREASING] * 2, [p.curvature, q.curvature], [p.range, q.range])
        return Expr(
            lambda x: f2(p.f(x), q.f(x)),
            image2(p.range, q.range),
            out,
            f"{name}({p.text}, {q.text})",
        )
    usable = [atom for atom in _atoms() if p.range.is_subset(atom[5])]
    name, f1, image1, curv1, mono, _ = usable[rng.integers(0, len(usable))]
    out = compose(curv1, [mono], [p.curvature], [p.range])
    return Expr(lambda x: f1(p.f(x)), image1(p.range), out, f"{name}({p.text})")


def test_random_expressions_reported_convex_or_concave_are_so_numerically() -> None:
    rng = np.random.default_rng(1234)
    proven = 0
    for _ in range(2000):
        e = random_expr(rng, 4)
        if e.curvature is UNKNOWN:
            continue
        a, b = rng.uniform(-3, 3, 200), rng.uniform(-3, 3, 200)
        with np.errstate(all="ignore"):
            fa, fb, fm = e.f(a), e.f(b), e.f((a + b) / 2)
        ok = np.isfinite(fa) & np.isfinite(fb) & np.isfinite(fm)
        fa, fb, fm = fa[ok], fb[ok], fm[ok]
        gap = (fa + fb) / 2 - fm  # ≥ 0 for convex, ≤ 0 for concave
        tol = 1e-9 * (1 + np.abs(fa) + np.abs(fb) + np.abs(fm))
        if e.curvature.is_convex:
            assert np.all(gap >= -tol), f"{e.text} reported {e.curvature}"
        if e.curvature.is_concave:
            assert np.all(gap <= tol), f"{e.text} reported {e.curvature}"
        values = np.concatenate([fa, fb, fm])
        slack = 1e-9 * (1 + np.abs(values).max(initial=0))
        assert np.all((values >= e.range.lo - slack) & (values <= e.range.hi + slack)), e.text
        proven += 1
    assert proven > 300  # the generator produces plenty of provable expressions


# ---- smoothness ------------------------------------------------------------------------

S = Smoothness


@pytest.mark.parametrize(
    "op,args,expected",
    [
        (S.SMOOTH, [S.SMOOTH], S.SMOOTH),
        (S.KINKED, [S.SMOOTH], S.KINKED),  # relu(x)
        (S.SMOOTH, [S.KINKED, S.SMOOTH], S.KINKED),
        (S.ZERO_GRADIENT, [S.SMOOTH], S.ZERO_GRADIENT),  # x > 0
        (S.SMOOTH, [S.ZERO_GRADIENT], S.ZERO_GRADIENT),  # exp(floor(x))
        (S.SMOOTH, [S.ZERO_GRADIENT, S.CONSTANT], S.ZERO_GRADIENT),  # floor(x) + 1
        (S.SMOOTH, [S.ZERO_GRADIENT, S.SMOOTH], S.KINKED),  # floor(x) + x
        (S.SMOOTH, [S.ZERO_GRADIENT, S.SMOOTH, S.CONSTANT], S.KINKED),  # where(x > 0, x, 0)
        (S.SMOOTH, [S.CONSTANT, S.CONSTANT], S.CONSTANT),
        (S.CONSTANT, [S.SMOOTH], S.CONSTANT),  # detach(x)
        (S.ZERO_GRADIENT, [S.CONSTANT], S.CONSTANT),  # a comparison of constants
        (S.NONE, [S.SMOOTH], S.NONE),
        (S.SMOOTH, [S.NONE, S.KINKED], S.NONE),
    ],
)
def test_combine_smoothness(op: Smoothness, args: list[Smoothness], expected: Smoothness) -> None:
    assert cv.combine(op, args) is expected


def test_kinks_outside_the_argument_range_do_not_count() -> None:
    assert cv.smoothness_over(S.KINKED, [0.0], positive()) is S.SMOOTH
    assert cv.smoothness_over(S.KINKED, [0.0], nonneg()) is S.KINKED
    assert cv.smoothness_over(S.ZERO_GRADIENT, [0.0], positive()) is S.ZERO_GRADIENT


def test_differentiable_labels_match_the_language_reference() -> None:
    assert cv.differentiable_label(S.SMOOTH) == "yes"
    assert cv.differentiable_label(S.CONSTANT) == "yes"
    assert cv.differentiable_label(S.KINKED) == "almost everywhere"
    assert cv.differentiable_label(S.ZERO_GRADIENT) == "almost everywhere"
    assert cv.differentiable_label(S.NONE) == "no"


def test_table_docstring_names_every_elementwise_op() -> None:
    doc = cv.__doc__ or ""
    for op in ["exp", "log1mexp", "softplus", "logaddexp", "xlogy", "clamp", "log_softmax"]:
        assert op in doc
