"""Sound interval arithmetic over the extended reals, for the range analysis.

An `Interval` is the set of values between two ends, each open or closed. The
conventions, chosen so that every answer is a superset of the truth:

- Ends may be ±inf. An *open* infinite end means "unbounded, but every value is
  finite" (an input `in [0, inf)`). A *closed* one means ±inf itself can occur:
  the argument can be infinite, or an op is evaluated at a pole (log(0) = -inf,
  1/0 = inf) or overflows float64 (exp(1000) = inf). `is_finite()` tells them apart.
- Nothing here raises on numbers: overflow saturates to ±inf, poles give ±inf.
- NaN is never a member. What makes NaN in floats (log of a negative, 0/0,
  inf - inf, 0·inf with inf attained) lies outside the interval; the hazard pass
  finds it with `admits_outside` and `is_finite` (W300, W303). Signed zeros are
  not tracked: a zero denominator is taken as +0 when the denominator is ≥ 0.
- Endpoints are computed in float64, so a bound may be off by the rounding of
  one operation (about one ulp); `str()` rounds outward, so printed bounds hold.

Image functions take intervals and return the interval of results; reductions
take the interval of one element (`sum_of`, `mean_of`, …). `ELEMENTWISE` maps
each elementwise op name of the language to its image function.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

inf = math.inf
Bound = tuple[float, bool]  # (value, closed)


def _to_float(x: float) -> float:
    # int(10**400) does not fit a float: saturate instead of raising OverflowError.
    try:
        return float(x)
    except OverflowError:
        return inf if x > 0 else -inf


@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    lo_closed: bool = True
    hi_closed: bool = True

    def __post_init__(self) -> None:
        lo, hi = _to_float(self.lo), _to_float(self.hi)
        lo_c, hi_c = self.lo_closed, self.hi_closed
        if math.isnan(lo):  # an unknown end is as wide as can be (sound)
            lo, lo_c = -inf, True
        if math.isnan(hi):
            hi, hi_c = inf, True
        if lo > hi or (lo == hi and not (lo_c and hi_c)):
            lo, hi, lo_c, hi_c = inf, -inf, False, False  # the one empty interval
        set_ = object.__setattr__
        set_(self, "lo", lo + 0.0)  # + 0.0 turns -0.0 into 0.0
        set_(self, "hi", hi + 0.0)
        set_(self, "lo_closed", lo_c)
        set_(self, "hi_closed", hi_c)

    # ---- constructors ----------------------------------------------------------
    @classmethod
    def closed(cls, lo: float, hi: float) -> Interval:
        return cls(lo, hi, True, True)

    @classmethod
    def open(cls, lo: float, hi: float) -> Interval:
        return cls(lo, hi, False, False)

    @classmethod
    def open_closed(cls, lo: float, hi: float) -> Interval:
        return cls(lo, hi, False, True)

    @classmethod
    def closed_open(cls, lo: float, hi: float) -> Interval:
        return cls(lo, hi, True, False)

    @classmethod
    def point(cls, x: float) -> Interval:
        return cls(x, x, True, True)

    @classmethod
    def empty(cls) -> Interval:
        return cls(inf, -inf, False, False)

    @classmethod
    def everything(cls) -> Interval:
        """(-inf, inf): any finite value."""
        return cls(-inf, inf, False, False)

    @classmethod
    def extended(cls) -> Interval:
        """[-inf, inf]: any value, infinities included."""
        return cls(-inf, inf, True, True)

    @classmethod
    def nonneg(cls) -> Interval:
        return cls(0, inf, True, False)

    @classmethod
    def nonpos(cls) -> Interval:
        return cls(-inf, 0, False, True)

    @classmethod
    def positive(cls) -> Interval:
        return cls(0, inf, False, False)

    @classmethod
    def negative(cls) -> Interval:
        return cls(-inf, 0, False, False)

    @classmethod
    def unit(cls) -> Interval:
        """[0, 1]: probabilities and bools."""
        return cls(0, 1, True, True)

    @classmethod
    def parse(cls, text: str) -> Interval:
        """`"[0, inf)"` -> Interval; raises ValueError on malformed text."""
        m = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^\])]+?)\s*([\])])\s*", text)
        if m is None:
            raise ValueError(f"not an interval: {text!r}")
        return cls(float(m[2]), float(m[3]), m[1] == "[", m[4] == "]")

    # ---- predicates ------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        return self.lo > self.hi

    @property
    def is_point(self) -> bool:
        return self.lo == self.hi

    def contains(self, x: float) -> bool:
        x = _to_float(x)
        above = self.lo < x or (self.lo == x and self.lo_closed)
        below = x < self.hi or (x == self.hi and self.hi_closed)
        return above and below

    def __contains__(self, x: float) -> bool:
        return self.contains(x)

    @property
    def contains_zero(self) -> bool:
        return self.contains(0.0)

    def is_subset(self, other: Interval) -> bool:
        if self.is_empty:
            return True
        lo_ok = other.lo < self.lo or (
            other.lo == self.lo and (other.lo_closed or not self.lo_closed)
        )
        hi_ok = self.hi < other.hi or (
            other.hi == self.hi and (other.hi_closed or not self.hi_closed)
        )
        return lo_ok and hi_ok

    def is_finite(self) -> bool:
        """Every member is a finite number (ends at ±inf, if any, are open)."""
        return not (self.lo == -inf and self.lo_closed) and not (self.hi == inf and self.hi_closed)

    def is_bounded_below(self) -> bool:
        return self.lo > -inf

    def is_bounded_above(self) -> bool:
        return self.hi < inf

    def is_bounded(self) -> bool:
        return self.is_bounded_below() and self.is_bounded_above()

    def is_nonneg(self) -> bool:
        return self.lo >= 0

    def is_nonpos(self) -> bool:
        return self.hi <= 0

    def is_positive(self) -> bool:
        return self.lo > 0 or (self.lo == 0 and not self.lo_closed)

    def is_negative(self) -> bool:
        return self.hi < 0 or (self.hi == 0 and not self.hi_closed)

    # ---- printing --------------------------------------------------------------
    def __str__(self) -> str:
        if self.is_empty:
            return "empty"
        left = "[" if self.lo_closed else "("
        right = "]" if self.hi_closed else ")"
        return f"{left}{_fmt(self.lo, lower=True)}, {_fmt(self.hi, lower=False)}{right}"

    # ---- operators -------------------------------------------------------------
    def __neg__(self) -> Interval:
        return neg(self)

    def __add__(self, other: Interval | float) -> Interval:
        return add(self, _as_interval(other))

    def __radd__(self, other: float) -> Interval:
        return add(_as_interval(other), self)

    def __sub__(self, other: Interval | float) -> Interval:
        return sub(self, _as_interval(other))

    def __rsub__(self, other: float) -> Interval:
        return sub(_as_interval(other), self)

    def __mul__(self, other: Interval | float) -> Interval:
        return mul(self, _as_interval(other))

    def __rmul__(self, other: float) -> Interval:
        return mul(_as_interval(other), self)

    def __truediv__(self, other: Interval | float) -> Interval:
        return div(self, _as_interval(other))

    def __rtruediv__(self, other: float) -> Interval:
        return div(_as_interval(other), self)

    def __pow__(self, p: float) -> Interval:
        return power(self, p)

    def __or__(self, other: Interval) -> Interval:
        return hull(self, other)

    def __and__(self, other: Interval) -> Interval:
        return intersect(self, other)


closed = Interval.closed
open_ = Interval.open
open_closed = Interval.open_closed
closed_open = Interval.closed_open
point = Interval.point
empty = Interval.empty
everything = Interval.everything
extended = Interval.extended
nonneg = Interval.nonneg
nonpos = Interval.nonpos
positive = Interval.positive
negative = Interval.negative
unit = Interval.unit
parse = Interval.parse

EMPTY = Interval.empty()
UNIT = Interval.unit()
ZERO = Interval.point(0)
ONE = Interval.point(1)


def _as_interval(x: Interval | float) -> Interval:
    return x if isinstance(x, Interval) else Interval.point(x)


def _fmt(v: float, lower: bool) -> str:
    """Short text for a bound, rounded outward so that the printed interval still holds."""
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    text = repr(v)
    if len(text) <= 8:  # already short and exact: 0.2, 1e-08
        return text
    d = Decimal(v)
    d = d.quantize(Decimal(1).scaleb(d.adjusted() - 5), ROUND_FLOOR if lower else ROUND_CEILING)
    return format(d.normalize(), "g").replace("E", "e")


# ---- set operations ------------------------------------------------------------


def _pick_lo(cands: Iterable[Bound]) -> Bound:
    cands = list(cands)
    v = min(c[0] for c in cands)
    return v, any(c[1] for c in cands if c[0] == v)


def _pick_hi(cands: Iterable[Bound]) -> Bound:
    cands = list(cands)
    v = max(c[0] for c in cands)
    return v, any(c[1] for c in cands if c[0] == v)


def _from_bounds(lo: Bound, hi: Bound) -> Interval:
    return Interval(lo[0], hi[0], lo[1], hi[1])


def hull(*intervals: Interval) -> Interval:
    """The smallest interval containing all of them (the union, where that is an interval)."""
    parts = [i for i in intervals if not i.is_empty]
    if not parts:
        return EMPTY
    lo = _pick_lo((i.lo, i.lo_closed) for i in parts)
    hi = _pick_hi((i.hi, i.hi_closed) for i in parts)
    return _from_bounds(lo, hi)


union = hull


def intersect(*intervals: Interval) -> Interval:
    if any(i.is_empty for i in intervals):
        return EMPTY
    lo = max(i.lo for i in intervals)
    hi = min(i.hi for i in intervals)
    lo_c = all(i.lo_closed for i in intervals if i.lo == lo)
    hi_c = all(i.hi_closed for i in intervals if i.hi == hi)
    return Interval(lo, hi, lo_c, hi_c)


def _image(lo: Bound, hi: Bound) -> Interval:
    """The image of a nonempty set: never empty, whatever float rounding did to the ends."""
    (a, ac), (b, bc) = lo, hi
    if math.isnan(a):
        a, ac = -inf, True
    if math.isnan(b):
        b, bc = inf, True
    if a >= b:  # a strictly monotone map flattened by rounding (tanh of (20, 30) is {1})
        return Interval(min(a, b), max(a, b), True, True)
    return Interval(a, b, ac, bc)


# ---- arithmetic ----------------------------------------------------------------


def _overflowed(v: float, *operands: float) -> bool:
    return math.isinf(v) and all(math.isfinite(o) for o in operands)


def neg(a: Interval) -> Interval:
    return Interval(-a.hi, -a.lo, a.hi_closed, a.lo_closed)


def add(a: Interval, b: Interval) -> Interval:
    if a.is_empty or b.is_empty:
        return EMPTY
    lo, hi = a.lo + b.lo, a.hi + b.hi
    # Overflow of finite operands gives inf in float64, and does so just inside open
    # ends too, so that end is attained. inf - inf (NaN) widens in _image.
    lo_c = (a.lo_closed and b.lo_closed) or _overflowed(lo, a.lo, b.lo)
    hi_c = (a.hi_closed and b.hi_closed) or _overflowed(hi, a.hi, b.hi)
    return _image((lo, lo_c), (hi, hi_c))


def sub(a: Interval, b: Interval) -> Interval:
    return add(a, neg(b))


def _ends(a: Interval) -> tuple[Bound, Bound]:
    return (a.lo, a.lo_closed), (a.hi, a.hi_closed)


def mul(a: Interval, b: Interval) -> Interval:
    """Product. At a corner 0·±inf counts as 0 (IEEE 1788): the corners then bound every
    real product. A product is 0 wherever a factor is exactly 0, so a closed 0 end makes
    0 attained whatever the other factor's end is."""
    if a.is_empty or b.is_empty:
        return EMPTY
    cands: list[Bound] = []
    for x, xc in _ends(a):
        for y, yc in _ends(b):
            v = 0.0 if x == 0 or y == 0 else _underflowed(x * y, x, y)
            attained = (xc and yc) or (x == 0 and xc) or (y == 0 and yc) or _overflowed(v, x, y)
            cands.append((v, attained))
    return _image(_pick_lo(cands), _pick_hi(cands))


def _recip(t: float) -> float:
    return inf if t == 0 else 1.0 / t


def reciprocal(b: Interval) -> Interval:
    """1/b. A denominator that can be 0 gives inf (the pole is attained)."""
    if b.is_empty:
        return EMPTY
    if b.lo >= 0:
        return monotone_image(_recip, b, increasing=False)
    if b.hi <= 0:  # b is ≤ 0: its zero is approached from below, 1/0- = -inf
        return monotone_image(lambda t: -inf if t == 0 else 1.0 / t, b, increasing=False)
    return Interval.extended()  # 0 inside: both infinities, and everything between


def div(a: Interval, b: Interval) -> Interval:
    """a / b. Over a one-signed denominator the quotient is monotone in each argument, so
    the corners bound it, each read as a · (1/b) with the 0·inf rule of `mul` (computed
    as a quotient: 1/b may overflow where a/b does not). A zero end of b counts as +0 if
    b ≥ 0 and -0 if b ≤ 0; NaN from 0/0 or inf/inf is outside the interval."""
    if a.is_empty or b.is_empty:
        return EMPTY
    if b.lo < 0 < b.hi:  # 0 inside: both infinities, and everything between
        return ZERO if a == ZERO else Interval.extended()
    side = 1.0 if b.lo >= 0 else -1.0
    cands: list[Bound] = []
    for x, xc in _ends(a):
        for y, yc in _ends(b):
            overflow = False
            if x == 0 or math.isinf(y):
                v = 0.0
            elif y == 0:  # the pole: attained only if b's zero end is
                v = math.copysign(inf, x) * side
            else:
                v = _underflowed(x / y, x, y)
                overflow = _overflowed(v, x, y)
            pole = y == 0 and yc and x != 0
            cands.append((v, (xc and yc) or (x == 0 and xc) or pole or overflow))
    return _image(_pick_lo(cands), _pick_hi(cands))


def _underflowed(v: float, *operands: float) -> float:
    # A nonzero product rounded to ±0 keeps its sign as the smallest float, so that a
    # later reciprocal cannot lose it (1 / (-1e-185)^3 is -inf, not +inf).
    if v == 0 and all(o != 0 for o in operands):
        return math.copysign(5e-324, v)
    return v


def _pow(t: float, p: float) -> float:
    try:
        return _underflowed(math.pow(t, p), t) if p > 0 else math.pow(t, p)
    except (OverflowError, ValueError):  # overflow, or 0 to a negative power
        if t == 0:
            return inf
        odd = float(p).is_integer() and int(p) % 2 == 1
        return -inf if t < 0 and odd else inf


def _integer(p: float) -> bool:
    return math.isfinite(p) and float(p).is_integer()


def power(x: Interval, p: float) -> Interval:
    """x ** p for a constant p. Integer p: all reals (x^0 = 1, even powers see |x|,
    negative powers are reciprocals). Fractional p: only x ≥ 0 is real; the negative
    part gives NaN and is left out (W300 reports it)."""
    p = _to_float(p)
    if x.is_empty:
        return EMPTY
    if p == 0 or math.isnan(p):
        return ONE if p == 0 else Interval.extended()
    if _integer(p) and p > 0:
        n = int(p)
        base = x if n % 2 else absolute(x)
        return monotone_image(lambda t: _pow(t, n), base)
    if _integer(p):
        return reciprocal(power(x, -p))
    x = intersect(x, Interval(0, inf))
    if x.is_empty:
        return EMPTY
    return monotone_image(lambda t: _pow(t, p), x, increasing=p > 0, strict=math.isfinite(p))


def power_interval(x: Interval, y: Interval) -> Interval:
    """x ** y with a varying exponent, as exp(y · log x) for x ≥ 0. A negative base with a
    varying exponent gives NaN or a sign we cannot bound: the answer is everything."""
    if y.is_point:
        return power(x, y.lo)
    if x.is_empty or y.is_empty:
        return EMPTY
    if x.lo < 0:
        return Interval.extended()
    return exp(mul(y, log(x)))


# ---- monotone images -----------------------------------------------------------


def _eval(f: Callable[[float], float], t: float, fallback: float) -> Bound:
    # f may raise on overflow (math.exp(1000)) or at a pole (math.log(0)): saturate to
    # the widest sound bound, closed. Saturating functions (the ones below) are exact.
    try:
        v = float(f(t))
    except (OverflowError, ValueError, ZeroDivisionError):
        return fallback, True
    return (fallback, True) if math.isnan(v) else (v, False)


def monotone_image(
    f: Callable[[float], float],
    x: Interval,
    increasing: bool = True,
    *,
    strict: bool = True,
) -> Interval:
    """The image of x under a continuous monotone f, evaluated at the ends.

    Each end of the image is closed where x's end is (f attains it there). For a
    strictly monotone f the limit at an open end is not attained, so it stays open;
    pass strict=False for a function that can be flat (relu, floor), where only an
    infinite end of x that is open maps to an open end. An exception or NaN from f
    gives -inf / inf (closed) for that end: sound, if loose.
    """
    if x.is_empty:
        return EMPTY
    lo_fb, hi_fb = (-inf, inf) if increasing else (inf, -inf)
    (a, a_forced), (b, b_forced) = _eval(f, x.lo, lo_fb), _eval(f, x.hi, hi_fb)
    ac, bc = x.lo_closed or a_forced, x.hi_closed or b_forced
    if not strict:
        ac = ac or not (math.isinf(x.lo) and math.isinf(a))
        bc = bc or not (math.isinf(x.hi) and math.isinf(b))
    if not increasing:
        (a, ac), (b, bc) = (b, bc), (a, ac)
    return _image((a, ac), (b, bc))


def _split_at_zero(x: Interval) -> tuple[Interval, Interval]:
    return intersect(x, Interval(-inf, 0)), intersect(x, Interval(0, inf))


# ---- saturating scalar functions (never raise; the value at ±inf is the limit) --


def _exp(t: float) -> float:
    try:
        return math.exp(t)
    except OverflowError:
        return inf


def _log(t: float) -> float:
    return -inf if t == 0 else math.log(t)


def _log1p(t: float) -> float:
    return -inf if t == -1 else math.log1p(t)


def _expm1(t: float) -> float:
    try:
        return math.expm1(t)
    except OverflowError:
        return inf


def _log1mexp(t: float) -> float:
    # log(1 - e^t) for t ≤ 0, in the accurate form on each side of -log 2.
    if t == 0:
        return -inf
    return math.log(-math.expm1(t)) if t > -math.log(2) else math.log1p(-_exp(t))


def _sigmoid(t: float) -> float:
    if t >= 0:
        return 1.0 / (1.0 + _exp(-t))
    e = _exp(t)
    return e / (1.0 + e)


def _softplus(t: float) -> float:
    return max(t, 0.0) + math.log1p(_exp(-abs(t)))


def _logaddexp(a: float, b: float) -> float:
    m = max(a, b)
    if math.isinf(m):
        return m
    return m + math.log1p(_exp(-abs(a - b)))


def _floor(t: float) -> float:
    return t if math.isinf(t) else float(math.floor(t))


def _rint(t: float) -> float:
    return t if math.isinf(t) else float(round(t))  # half to even, like torch.round


# ---- elementwise ops -----------------------------------------------------------

DOMAIN_LOG = Interval(0, inf, False, True)  # (0, inf]: log(0) is a pole
DOMAIN_LOG1P = Interval(-1, inf, False, True)
DOMAIN_SQRT = Interval(0, inf, True, True)
DOMAIN_LOG1MEXP = Interval(-inf, 0, True, False)
DOMAIN_NONZERO: tuple[Interval, ...] = (Interval(-inf, 0, True, False), Interval(0, inf, False))
DOMAIN_XLOGY_Y = DOMAIN_LOG  # xlogy(x, 0) is a pole unless x = 0
DOMAIN_FRACTIONAL_POWER = DOMAIN_SQRT  # x ** p, p not an integer (p < 0: DOMAIN_LOG)


def exp(x: Interval) -> Interval:
    return monotone_image(_exp, x)


def log(x: Interval) -> Interval:
    return monotone_image(_log, intersect(x, DOMAIN_SQRT))


def log1p(x: Interval) -> Interval:
    return monotone_image(_log1p, intersect(x, Interval(-1, inf)))


def expm1(x: Interval) -> Interval:
    return monotone_image(_expm1, x)


def log1mexp(x: Interval) -> Interval:
    """log(1 - exp(x)), real for x ≤ 0; decreasing, -inf at 0."""
    return monotone_image(_log1mexp, intersect(x, Interval(-inf, 0)), increasing=False)


def sqrt(x: Interval) -> Interval:
    return monotone_image(math.sqrt, intersect(x, DOMAIN_SQRT))


def absolute(x: Interval) -> Interval:
    negative_part, positive_part = _split_at_zero(x)
    return hull(neg(negative_part), positive_part)


def square(x: Interval) -> Interval:
    return power(x, 2)


def sign(x: Interval) -> Interval:
    if x.is_empty:
        return EMPTY
    values = [v for v, present in ((-1, x.lo < 0), (0, x.contains_zero), (1, x.hi > 0)) if present]
    return Interval.closed(min(values), max(values))


def floor(x: Interval) -> Interval:
    return monotone_image(_floor, x, strict=False)


def rint(x: Interval) -> Interval:
    """torch.round: to the nearest integer, halves to even."""
    return monotone_image(_rint, x, strict=False)


def sigmoid(x: Interval) -> Interval:
    return monotone_image(_sigmoid, x)


def logsigmoid(x: Interval) -> Interval:
    return monotone_image(lambda t: -_softplus(-t), x)


def softplus(x: Interval) -> Interval:
    return monotone_image(_softplus, x)


def tanh(x: Interval) -> Interval:
    return monotone_image(math.tanh, x)


def relu(x: Interval) -> Interval:
    return maximum(x, ZERO)


def minimum(a: Interval, b: Interval) -> Interval:
    """Elementwise min. Its lower end is the lower of the two (attained if that one is);
    its upper end min(a.hi, b.hi) needs both at it when they tie."""
    if a.is_empty or b.is_empty:
        return EMPTY
    lo = _pick_lo([(a.lo, a.lo_closed), (b.lo, b.lo_closed)])
    if a.hi == b.hi:
        hi = (a.hi, a.hi_closed and b.hi_closed)
    else:
        hi = (a.hi, a.hi_closed) if a.hi < b.hi else (b.hi, b.hi_closed)
    return _from_bounds(lo, hi)


def maximum(a: Interval, b: Interval) -> Interval:
    return neg(minimum(neg(a), neg(b)))


def clamp(x: Interval, lo: Interval | None = None, hi: Interval | None = None) -> Interval:
    """torch.clamp = min(max(x, lo), hi); bounds may be intervals (params)."""
    if lo is not None:
        x = maximum(x, lo)
    if hi is not None:
        x = minimum(x, hi)
    return x


def xlogy(x: Interval, y: Interval) -> Interval:
    """x · log(y), with xlogy(0, y) = 0 for every y (torch), also where log(y) is -inf
    (the 0·inf rule gives that) or NaN (y < 0, so it is added here)."""
    product = mul(x, log(y))
    return hull(product, ZERO) if x.contains_zero and not y.is_empty else product


def xlogx(x: Interval) -> Interval:
    """x · log(x) as one function (xlogy(x, x)): bounded below by -1/e, at x = 1/e."""
    f = lambda t: 0.0 if t == 0 else t * _log(t)  # noqa: E731
    x = intersect(x, DOMAIN_SQRT)
    left, right = intersect(x, Interval(0, 1 / math.e)), intersect(x, Interval(1 / math.e, inf))
    return hull(monotone_image(f, left, increasing=False), monotone_image(f, right))


def logaddexp(a: Interval, b: Interval) -> Interval:
    """Increasing in both arguments; an end is attained when both arguments' ends are,
    or when one argument attains inf (logaddexp(x, inf) = inf for any x)."""
    if a.is_empty or b.is_empty:
        return EMPTY

    def end(x: Bound, y: Bound) -> Bound:
        v = _logaddexp(x[0], y[0])
        at_inf = v == inf and ((x[0] == inf and x[1]) or (y[0] == inf and y[1]))
        return v, (x[1] and y[1]) or at_inf

    (a_lo, a_hi), (b_lo, b_hi) = _ends(a), _ends(b)
    return _image(end(a_lo, b_lo), end(a_hi, b_hi))


def where(condition: Interval, a: Interval, b: Interval) -> Interval:
    """The selected branch when the condition is decided, else the hull of both."""
    if condition.is_empty:
        return EMPTY
    if not condition.contains_zero:
        return a
    if condition == ZERO:
        return b
    return hull(a, b)


def cos(x: Interval) -> Interval:
    """Image of cos: ±1 are included wherever a multiple of π may lie in x (with a
    margin for the rounding of π, so sound)."""
    if x.is_empty:
        return EMPTY
    margin = 1e-9 * max(1.0, abs(x.lo), abs(x.hi))
    lo, hi = x.lo - margin, x.hi + margin
    if not math.isfinite(hi - lo) or hi - lo >= 2 * math.pi:
        return Interval.closed(-1, 1)
    cands: list[Bound] = [(math.cos(x.lo), x.lo_closed), (math.cos(x.hi), x.hi_closed)]
    k = math.ceil(lo / math.pi)
    while k * math.pi <= hi:
        cands.append((1.0 if k % 2 == 0 else -1.0, True))
        k += 1
    return _image(_pick_lo(cands), _pick_hi(cands))


# ---- comparisons and logic: a bool is [0, 1], or a point when it is decided ------


def less(a: Interval, b: Interval) -> Interval:
    if a.is_empty or b.is_empty:
        return EMPTY
    if a.hi < b.lo or (a.hi == b.lo and not (a.hi_closed and b.lo_closed)):
        return ONE
    return ZERO if a.lo >= b.hi else UNIT


def less_equal(a: Interval, b: Interval) -> Interval:
    if a.is_empty or b.is_empty:
        return EMPTY
    if a.hi <= b.lo:
        return ONE
    if a.lo > b.hi or (a.lo == b.hi and not (a.lo_closed and b.hi_closed)):
        return ZERO
    return UNIT


def greater(a: Interval, b: Interval) -> Interval:
    return less(b, a)


def greater_equal(a: Interval, b: Interval) -> Interval:
    return less_equal(b, a)


def equal(a: Interval, b: Interval) -> Interval:
    if a.is_empty or b.is_empty:
        return EMPTY
    if intersect(a, b).is_empty:
        return ZERO
    return ONE if a.is_point and a == b else UNIT


def not_equal(a: Interval, b: Interval) -> Interval:
    return logical_not(equal(a, b))


def logical_not(a: Interval) -> Interval:
    if a.is_empty:
        return EMPTY
    if a == ZERO:
        return ONE
    return UNIT if a.contains_zero else ZERO


def logical_and(a: Interval, b: Interval) -> Interval:
    if a.is_empty or b.is_empty:
        return EMPTY
    if a == ZERO or b == ZERO:
        return ZERO
    return ONE if not a.contains_zero and not b.contains_zero else UNIT


def logical_or(a: Interval, b: Interval) -> Interval:
    return logical_not(logical_and(logical_not(a), logical_not(b)))


# ---- schedules -----------------------------------------------------------------


def lerp(start: Interval, end: Interval, t: Interval) -> Interval:
    """start + (end - start)·t for t ⊆ [0, 1], without the dependency blow-up of
    evaluating that formula: (1 - t)·start + t·end is monotone in start and end, and
    affine in t, so the extremes sit at t's ends."""
    t = intersect(t, UNIT)
    if t.is_empty or start.is_empty or end.is_empty:
        return EMPTY
    at = [add(mul(point(1 - u), start), mul(point(u), end)) for u in (t.lo, t.hi)]
    return hull(*at)


def geometric(start: Interval, end: Interval, t: Interval) -> Interval:
    """start·(end/start)^t for t ⊆ [0, 1] (the exponential schedule): between start and
    end when both are positive; anything else may be NaN, so everything."""
    if not (start.is_positive() and end.is_positive()):
        return Interval.extended()
    return exp(lerp(log(start), log(end), t))


# ---- reductions over n elements, each in x ---------------------------------------
# A reduction over dims of unknown size has n ≥ 1 elements (min_count=1); a masked
# one (where=) may select none (min_count=0). max_count=None: no known upper limit.


def _times_count(v: float, c: bool, n: float) -> Bound:
    if n == 0:
        return 0.0, True  # the empty sum is 0, attained
    if math.isinf(n):  # the limit of n·v: finite n never reaches ±inf unless v is ±inf
        return (0.0, c) if v == 0 else (math.copysign(inf, v), c and math.isinf(v))
    return n * v, c


def sum_of(x: Interval, min_count: int = 1, max_count: int | None = None) -> Interval:
    """The sum of n elements of x, n in [min_count, max_count]. n·v is monotone in n,
    so the extremes come from the extreme counts."""
    counts = (float(min_count), inf if max_count is None else float(max_count))
    if x.is_empty:
        return ZERO if min_count == 0 else EMPTY
    lo = _pick_lo(_times_count(x.lo, x.lo_closed, n) for n in counts)
    hi = _pick_hi(_times_count(x.hi, x.hi_closed, n) for n in counts)
    return _from_bounds(lo, hi)


def mean_of(x: Interval, may_be_empty: bool = False) -> Interval:
    """A mean lies between its elements. A masked mean of an empty selection is 0
    (LANGUAGE.md), as is sum(x, where=m) / max(count(m), 1)."""
    return hull(x, ZERO) if may_be_empty else x


def max_of(x: Interval, may_be_empty: bool = False) -> Interval:
    """max over no elements is -inf."""
    return hull(x, point(-inf)) if may_be_empty else x


def min_of(x: Interval, may_be_empty: bool = False) -> Interval:
    """min over no elements is inf."""
    return hull(x, point(inf)) if may_be_empty else x


def logsumexp_of(x: Interval, min_count: int = 1, max_count: int | None = None) -> Interval:
    """Between max + 0 and max + log n; over no elements it is -inf."""
    if x.is_empty:
        return point(-inf) if min_count == 0 else EMPTY
    if min_count == 0:
        lo: Bound = (-inf, True)
    else:
        lo = (x.lo + math.log(min_count), x.lo_closed)
    if x.hi == -inf:
        hi: Bound = (-inf, True)
    elif max_count is None:
        hi = (inf, x.hi == inf and x.hi_closed)
    else:
        hi = (x.hi + math.log(max_count), x.hi_closed)
    return _image(lo, hi)


def softmax_of(x: Interval, max_count: int | None = None) -> Interval:
    """[0, 1]; 0 included because exp underflows for very negative logits."""
    return ONE if max_count == 1 and not x.is_empty else UNIT


def log_softmax_of(x: Interval, max_count: int | None = None) -> Interval:
    """x_i - logsumexp(x) ≤ 0, and ≥ lo - hi - log n when those are known."""
    if x.is_empty:
        return EMPTY
    if max_count == 1:
        return ZERO
    if x.is_bounded() and max_count is not None:
        return Interval.closed(x.lo - x.hi - math.log(max_count), 0)
    return Interval(-inf, 0, not x.is_finite(), True)


def entropy_of(x: Interval, max_count: int | None = None) -> Interval:
    """Entropy of softmax(x) over n classes: in [0, log n]; n unknown: [0, inf)."""
    if x.is_empty:
        return EMPTY
    if max_count is None:
        return Interval.nonneg()
    return Interval.closed(0, math.log(max_count))


def var_of(x: Interval, correction: int = 0) -> Interval:
    """Variance of elements in [lo, hi]: at most w²/4 (population, half at each end)
    or w²/2 (correction=1, two elements). Other corrections: [0, inf)."""
    if x.is_empty:
        return EMPTY
    if not x.is_finite():
        return Interval(0, inf, True, True)
    w = x.hi - x.lo
    if not math.isfinite(w) or correction not in (0, 1):
        return Interval.nonneg()
    top = w * w / (4 if correction == 0 else 2)
    return Interval(0, top, True, (x.lo_closed and x.hi_closed) or top == 0)


def std_of(x: Interval, correction: int = 0) -> Interval:
    return sqrt(var_of(x, correction))


def count_of(min_count: int = 0, max_count: int | None = None) -> Interval:
    return Interval(min_count, inf if max_count is None else max_count, True, max_count is not None)


def argmax_of(max_count: int | None = None) -> Interval:
    return Interval(0, inf if max_count is None else max_count - 1, True, max_count is not None)


# ---- domains (W300) --------------------------------------------------------------


def _merged(pieces: Sequence[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for p in sorted((p for p in pieces if not p.is_empty), key=lambda p: (p.lo, not p.lo_closed)):
        last = out[-1] if out else None
        if last is not None and (
            p.lo < last.hi or (p.lo == last.hi and (p.lo_closed or last.hi_closed))
        ):
            out[-1] = hull(last, p)
        else:
            out.append(p)
    return out


def admits_outside(argument: Interval, domain: Interval | Sequence[Interval]) -> bool:
    """Whether the argument's range has a value outside the domain (a union of intervals
    when a sequence, e.g. DOMAIN_NONZERO for a denominator): the W300 test."""
    pieces = [domain] if isinstance(domain, Interval) else list(domain)
    if argument.is_empty:
        return False
    return not any(argument.is_subset(p) for p in _merged(pieces))


ELEMENTWISE: dict[str, Callable[..., Interval]] = {
    "exp": exp,
    "log": log,
    "log1p": log1p,
    "expm1": expm1,
    "log1mexp": log1mexp,
    "sqrt": sqrt,
    "abs": absolute,
    "square": square,
    "sign": sign,
    "floor": floor,
    "round": rint,
    "sigmoid": sigmoid,
    "logsigmoid": logsigmoid,
    "softplus": softplus,
    "tanh": tanh,
    "relu": relu,
    "xlogy": xlogy,
    "logaddexp": logaddexp,
    "clamp": clamp,
    "min": minimum,
    "max": maximum,
    "where": where,
    "detach": lambda x: x,
    "cos": cos,
    "neg": neg,
    "add": add,
    "sub": sub,
    "mul": mul,
    "div": div,
    "lt": less,
    "le": less_equal,
    "gt": greater,
    "ge": greater_equal,
    "eq": equal,
    "ne": not_equal,
    "not": logical_not,
    "and": logical_and,
    "or": logical_or,
}
