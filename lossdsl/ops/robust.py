"""Interval rules of the robust-loss ops: each is increasing in |r| and in its scale."""

from __future__ import annotations

import math
from typing import Any

from lossdsl.analysis.intervals import Interval

inf = math.inf


def _huber(r: float, delta: float) -> float:
    if math.isinf(r):
        return inf if delta > 0 else 0.0
    return 0.5 * r * r if r < delta else delta * (r - 0.5 * delta)


def _smooth_l1(r: float, beta: float) -> float:
    if beta <= 0:
        return r
    return _huber(r, beta) / beta


def _cauchy(r: float, alpha: float) -> float:
    if alpha <= 0:
        return inf
    ratio = r / alpha
    return math.log1p(ratio * ratio) if ratio < 1e150 else inf


def _abs_range(r: Interval) -> tuple[float, float]:
    low = 0.0 if r.contains(0) or (r.lo < 0 < r.hi) else min(abs(r.lo), abs(r.hi))
    return low, max(abs(r.lo), abs(r.hi))


def _increasing_in_abs(f: Any, decreasing_in_scale: bool = False) -> Any:
    def rule(args: list[Interval], attrs: dict[str, Any]) -> Interval:
        r, scale = args
        if r.is_empty or scale.is_empty:
            return Interval.empty()
        low, high = _abs_range(r)
        small, large = (scale.hi, scale.lo) if decreasing_in_scale else (scale.lo, scale.hi)
        lo = f(low, max(small, 0.0))
        hi = f(high, max(large, 0.0))
        infinite_r = (r.hi == inf and r.hi_closed) or (r.lo == -inf and r.lo_closed)
        return Interval(lo, hi, True, not math.isinf(hi) or infinite_r)

    return rule


huber_image = _increasing_in_abs(_huber)
# smooth_l1 = huber(r, β)/β is decreasing in β (|r| - β/2 and r²/2β both shrink as β grows)
smooth_l1_image = _increasing_in_abs(_smooth_l1, decreasing_in_scale=True)
cauchy_image = _increasing_in_abs(_cauchy, decreasing_in_scale=True)


def _log_cosh(r: float, unused: float = 0.0) -> float:
    size = abs(r)
    return size + math.log1p(math.exp(-2 * size)) - math.log(2) if math.isfinite(size) else inf


_log_cosh_rule = _increasing_in_abs(_log_cosh)


def log_cosh_image(args: list[Interval], attrs: dict[str, Any]) -> Interval:
    return _log_cosh_rule([args[0], Interval.point(0)], attrs)
