"""The deliberate few tests that really run Inductor (each compile costs 10-30 s here)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import lossdsl
from tests.support import needs_one_compilation_across_sizes

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


@needs_one_compilation_across_sizes
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


@needs_one_compilation_across_sizes
def test_ppo_compiles_once_across_long_reductions_views_and_size_one_dims():
    """Inductor's CPU code sums more than 4096 floats with a cascade helper and used to
    guard on it (`4097 <= logits.size()[2]`, and on B·T for the token mean); a view used to
    guard on contiguity. Sizes stay small: only a class dim or the token count is long."""
    torch._dynamo.reset()
    counters.clear()
    compiled = lossdsl.load("ppo", compile=True)
    eager = lossdsl.load("ppo")
    big = ppo_batch(3, 2200, 4100)
    shifted = {name: t[:2, :-1] if t.dim() == 2 else t[:2, :-1, :] for name, t in big.items()}
    shifted["actions"] = shifted["actions"] % 7
    for x in [
        ppo_batch(2, 3, 8),
        ppo_batch(2, 3, 4100),
        ppo_batch(2, 2100, 3),
        shifted,
        ppo_batch(1, 1, 5),
    ]:
        out = compiled(**x)
        out.loss.backward()
        torch.testing.assert_close(out.loss, eager(**x).loss, rtol=1e-5, atol=1e-6)
    assert counters["stats"]["unique_graphs"] == 1


def test_a_class_index_out_of_range_is_an_input_error_under_inductor():
    """Inductor's kernels check indices themselves, without naming the input; the module
    then runs the uncompiled graph, whose assert does."""
    loss_fn = lossdsl.load("cross_entropy", compile=True)
    logits = torch.randn(4, 6)
    with pytest.raises(lossdsl.InputError, match=r"input `target` leads to a class index"):
        loss_fn(input=logits, target=torch.tensor([0, 6, 1, -100]))
    out = loss_fn(input=logits, target=torch.tensor([0, 5, 1, -100]))
    torch.testing.assert_close(
        out.loss, torch.nn.functional.cross_entropy(logits, torch.tensor([0, 5, 1, -100]))
    )


def test_bf16_logits_are_upcast_inside_the_kernels_not_copied():
    """The cast to float32 sits inside the compiled graph, so Inductor fuses it into the
    kernels that read the logits: the forward allocates no full-size float32 buffer."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()
    loss_fn = lossdsl.load("cross_entropy", compile=True)
    logits = torch.randn(64, 1000, dtype=torch.bfloat16)
    target = torch.randint(0, 1000, (64,))
    out, codes = run_and_get_code(lambda: loss_fn(input=logits, target=target).loss)
    assert out.dtype == torch.float32
    forward = "\n".join(codes)
    buffers = [line for line in forward.splitlines() if "empty_strided_cpu((" in line]
    full_size = [
        line for line in buffers if "torch.float32" in line and ", s" in line.split(")")[0]
    ]
    assert buffers and not full_size, full_size


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@needs_one_compilation_across_sizes
def test_inductor_keeps_the_adaptive_kl_controllers_updates_in_float64_and_float32(dtype):
    """In-place updates of a 0-d float64 tensor inside a compiled region are lost with
    Inductor (torch 2.13); the module's states must follow the eager ones in both dtypes."""
    torch._dynamo.reset()
    counters.clear()
    params = {"kl_ctl": "adaptive", "kl_coef": 0.2, "kl_target": 0.05, "kl_horizon": 20}
    compiled = lossdsl.load("ppo", params=params, compile=True).to(dtype)
    eager = lossdsl.load("ppo", params=params).to(dtype)
    torch.manual_seed(0)
    for call in range(4):
        x = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ppo_batch(3, 4).items()}
        x["ref_logp"] = (-torch.rand(3, 4, dtype=dtype) - 0.5 * call).clamp(max=-1e-3)
        got, want = compiled(**x), eager(**x)
        torch.testing.assert_close(got.states["kl_beta"], want.states["kl_beta"])
    assert float(eager.state_values[0]) != 0.2  # the controller moved β
    torch.testing.assert_close(compiled.state_values, eager.state_values)
    assert compiled.state_values.dtype == dtype
    assert counters["stats"]["unique_graphs"] == 1
