"""A `LossOutput` as the flat name -> value mapping that trainers log.

Names: `terms/<term>` (unweighted), `weights/<term>` (the weight `minimize` gave it at that
step) and `metrics/<metric>`. Metrics that are not scalars (a per-token loss, say) are left
out: a logger takes numbers.
"""

from __future__ import annotations

from typing import Any

import torch


def loggable(out: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The scalar values of a `LossOutput`, detached, keyed by their log names."""
    values: dict[str, torch.Tensor] = {}
    for kind, group in (("terms", out.terms), ("weights", out.weights), ("metrics", out.metrics)):
        for name, value in group.items():
            value = torch.as_tensor(value)
            if value.dim() == 0:
                values[f"{prefix}{kind}/{name}"] = value.detach()
    return values


class RunningMeans:
    """Means of a `LossOutput`'s scalars over the calls since they were last read.

    Sums stay tensors on the loss's device until `pop`, so adding never waits for the device.
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._calls = 0

    def add(self, out: Any) -> None:
        for name, value in loggable(out).items():
            value = value.double()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
        self._calls += 1

    def pop(self, prefix: str = "") -> dict[str, float]:
        """The means since the last `pop` (empty if nothing was added), then start again."""
        means = {
            f"{prefix}{name}": float(total) / self._calls for name, total in self._sums.items()
        }
        self._sums, self._calls = {}, 0
        return means
