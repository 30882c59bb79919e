"""Lowerings of the robust-loss ops (their facts live in the op table)."""

from __future__ import annotations

import math

import torch
import torch.fx as fx

from lossdsl.backend.lowering import LOWERINGS, Value, _Lowering
from lossdsl.ir import Node


def huber_without_where(size: Value, delta: Value) -> Value:
    """Huber of |r| = `size` as m·(|r| - m/2) with m = min(|r|, delta): the values and
    gradients of the two-branch form, with no `where` on |r| < delta (under torch.compile that
    condition is saved for the backward as a bool tensor, whose store is slow on CPU)."""
    inner = torch.minimum(size, delta) if isinstance(delta, fx.Proxy) else size.clamp(max=delta)
    return inner * (size - 0.5 * inner)


def _huber(low: _Lowering, node: Node, args: list[Value]) -> Value:
    return huber_without_where(torch.abs(low.tensor(args[0])), args[1])


def _smooth_l1(low: _Lowering, node: Node, args: list[Value]) -> Value:
    # 0.5·min(|r|, β)²/β + |r| - min(|r|, β): torch's smooth_l1, and |r| at β = 0, with no
    # branch that divides by zero.
    r, beta = (low.tensor(a) for a in args)
    size = torch.abs(r)
    inner = torch.minimum(size, beta)
    return 0.5 * torch.square(inner) / torch.clamp(beta, min=1e-30) + size - inner


def _cauchy(low: _Lowering, node: Node, args: list[Value]) -> Value:
    r, alpha = (low.tensor(a) for a in args)
    return torch.log1p(torch.square(r / alpha))


def _log_cosh(low: _Lowering, node: Node, args: list[Value]) -> Value:
    size = torch.abs(low.tensor(args[0]))
    return size + torch.nn.functional.softplus(-2 * size) - math.log(2)


def _xlogx(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x = low.tensor(args[0])
    return torch.xlogy(x, x)


LOWERINGS.update(
    huber=_huber, smooth_l1=_smooth_l1, cauchy=_cauchy, log_cosh=_log_cosh, xlogx=_xlogx
)
