"""What the adapters log: a `LossOutput`'s scalars under `terms/`, `weights/`, `metrics/`,
averaged over the calls between two logs."""

from __future__ import annotations

import pytest
import torch

import lossdsl
from lossdsl.integrations.logs import RunningMeans, loggable

SPEC = """
loss two_terms
input pred   : float[N] grad
input target : float[N]
param ramp = linear(0, 1, steps=10)
term fit  = mean(square(pred - target))
term size = mean(square(pred))
minimize fit + ramp * size
metric residuals = pred - target
metric worst     = max(abs(pred - target))
"""


def run(step: int, pred: list[float]) -> lossdsl.LossOutput:
    loss_fn = lossdsl.load_text(SPEC)
    return loss_fn(pred=torch.tensor(pred), target=torch.zeros(len(pred)), step=step)


def test_scalars_are_named_by_kind_and_non_scalar_metrics_left_out() -> None:
    values = loggable(run(step=5, pred=[1.0, -3.0]), prefix="train/")
    assert sorted(values) == [
        "train/metrics/worst",
        "train/terms/fit",
        "train/terms/size",
        "train/weights/fit",
        "train/weights/size",
    ]
    assert float(values["train/terms/fit"]) == pytest.approx(5.0)
    assert float(values["train/weights/size"]) == pytest.approx(0.5)
    assert float(values["train/metrics/worst"]) == pytest.approx(3.0)


def test_running_means_average_the_calls_since_the_last_pop() -> None:
    means = RunningMeans()
    means.add(run(step=0, pred=[1.0]))
    means.add(run(step=4, pred=[3.0]))
    first = means.pop(prefix="eval_")
    assert first["eval_terms/fit"] == pytest.approx((1.0 + 9.0) / 2)
    assert first["eval_weights/size"] == pytest.approx((0.0 + 0.4) / 2)
    assert means.pop() == {}
    means.add(run(step=10, pred=[2.0]))
    assert means.pop()["metrics/worst"] == pytest.approx(2.0)
