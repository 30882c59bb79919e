"""The deliberate few tests that really run Inductor (each compile costs 10-30 s here)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import lossdsl

pytestmark = pytest.mark.inductor


def ppo_batch(b: int, t: int, v: int = 16) -> dict:
    return {
        "logits": torch.randn(b, t, v, requires_grad=True),
        "values": torch.randn(b, t, requires_grad=True),
        "actions": torch.randint(0, v, (b, t)),
        "old_logp": -torch.rand(b, t) - 1.0,
        "old_values": torch.randn(b, t),
        "advantages": torch.randn(b, t),
        "returns": torch.randn(b, t),
        "mask": torch.rand(b, t) > 0.2,
    }


def test_ppo_compiles_once_across_twenty_calls_with_new_t_steps_and_params():
    torch._dynamo.reset()
    counters.clear()
    compiled = lossdsl.load("ppo", compile=True)  # backend="inductor"
    eager = lossdsl.load("ppo")
    for call in range(20):
        x = ppo_batch(4, 3 + call % 7)
        params = {"clip_low": 0.1 + 0.01 * call, "vf_coef": 0.25 + 0.05 * call}
        out = compiled(**x, step=100 * call, params=params)
        out.loss.backward()
        reference = eager(**x, step=100 * call, params=params)
        torch.testing.assert_close(out.loss, reference.loss, rtol=1e-5, atol=1e-6)
        for tensor in x.values():  # marks went on views, never on the caller's tensors
            assert not getattr(tensor, "_dynamo_dynamic_indices", set())
    assert counters["stats"]["unique_graphs"] == 1
