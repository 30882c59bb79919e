"""The run-time contract of LANGUAGE.md: inputs, dims, params, step, outputs."""

from __future__ import annotations

import pytest
import torch

import lossdsl

PPO_LIKE = """
loss ppo_like
input logits     : float[B, T, V]  grad
input values     : float[B, T]     grad
input actions    : int[B, T]       in [0, V)
input old_logp   : float[B, T]     in (-inf, 0]
input advantages : float[B, T]
input returns    : float[B, T]
input mask       : bool[B, T] = 1

param clip_low  = 0.2  in [0, 1]
param clip_high = 0.2  in [0, 1]
param vf_coef   = 0.5  in [0, inf)
param ent_coef  = linear(0.01, 0.0, steps=10000)

def masked_mean(x, m) = sum(x, where=m) / max(count(m), 1)

let logp  = log_softmax(logits, dim=V)
let lp    = gather(logp, actions, dim=V)
let ratio = exp(clamp(lp - old_logp, max=20))
let surr  = min(ratio * advantages, clamp(ratio, 1 - clip_low, 1 + clip_high) * advantages)

term policy  = -masked_mean(surr, mask)
term value   = masked_mean(square(values - returns), mask)
term entropy = masked_mean(entropy(logits, dim=V), mask)

minimize policy + vf_coef * value - ent_coef * entropy

metric clip_frac = masked_mean(abs(ratio - 1) > clip_low, mask)
metric approx_kl = masked_mean(old_logp - lp, mask)
metric per_token = surr
"""

B, T, V = 3, 5, 7


def inputs(dtype: torch.dtype = torch.float64, **override: torch.Tensor) -> dict:
    torch.manual_seed(0)
    values = {
        "logits": torch.randn(B, T, V, dtype=dtype, requires_grad=True),
        "values": torch.randn(B, T, dtype=dtype, requires_grad=True),
        "actions": torch.randint(0, V, (B, T)),
        "old_logp": -torch.rand(B, T, dtype=dtype),
        "advantages": torch.randn(B, T, dtype=dtype),
        "returns": torch.randn(B, T, dtype=dtype),
        "mask": torch.rand(B, T) > 0.3,
    }
    values.update(override)
    return values


def reference(x: dict, clip_low=0.2, clip_high=0.2, vf_coef=0.5, step=0) -> dict:
    """The same loss, written by hand in PyTorch."""
    mask = x["mask"].to(x["logits"].dtype)
    n = mask.sum().clamp(min=1)
    logp = x["logits"].log_softmax(-1)
    lp = logp.gather(-1, x["actions"].unsqueeze(-1)).squeeze(-1)
    ratio = torch.exp(torch.clamp(lp - x["old_logp"], max=20))
    adv = x["advantages"]
    surr = torch.minimum(ratio * adv, ratio.clamp(1 - clip_low, 1 + clip_high) * adv)
    policy = -(surr * mask).sum() / n
    value = ((x["values"] - x["returns"]) ** 2 * mask).sum() / n
    entropy = (-(logp.exp() * logp).sum(-1) * mask).sum() / n
    ent_coef = 0.01 + (0.0 - 0.01) * min(max(step / 10000, 0), 1)
    loss = policy + vf_coef * value - ent_coef * entropy
    return {
        "loss": loss,
        "policy": policy,
        "value": value,
        "entropy": entropy,
        "ent_coef": ent_coef,
    }


@pytest.fixture
def ppo(write_spec):
    return lossdsl.load(write_spec(PPO_LIKE))


def test_loss_terms_weights_and_metrics_match_a_hand_written_loss_in_float64(ppo):
    x = inputs()
    out = ppo(**x, step=1200)
    expected = reference(x, step=1200)
    assert out.loss.dtype == torch.float64
    torch.testing.assert_close(out.loss, expected["loss"], rtol=1e-12, atol=0)
    for name in ("policy", "value", "entropy"):
        torch.testing.assert_close(out.terms[name], expected[name], rtol=1e-12, atol=0)
    assert out.weights["value"].item() == 0.5
    assert out.weights["entropy"].item() == pytest.approx(-expected["ent_coef"], rel=1e-15)
    assert set(out.metrics) == {"clip_frac", "approx_kl", "per_token"}
    assert out.metrics["per_token"].shape == (B, T)


def test_gradients_match_the_hand_written_loss(ppo):
    x = inputs()
    ppo(**x, step=3).loss.backward()
    ours = (x["logits"].grad.clone(), x["values"].grad.clone())
    y = inputs()
    reference(y, step=3)["loss"].backward()
    torch.testing.assert_close(ours[0], y["logits"].grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(ours[1], y["values"].grad, rtol=1e-12, atol=1e-15)


def test_outputs_are_detached_except_the_loss(ppo):
    out = ppo(**inputs())
    assert out.loss.requires_grad
    for group in (out.terms, out.weights, out.metrics):
        assert all(not t.requires_grad for t in group.values())


def test_non_grad_inputs_are_detached(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss detached
        input x : float[N] grad
        input y : float[N]
        term t = mean(x * y)
    """)
    )
    x = torch.randn(4, requires_grad=True)
    y = torch.randn(4, requires_grad=True)
    loss_fn(x=x, y=y).loss.backward()
    assert x.grad is not None and y.grad is None


def test_float32_inputs_compute_in_float32_and_float64_wins(ppo):
    out32 = ppo(**inputs(torch.float32))
    assert out32.loss.dtype == torch.float32
    assert all(w.dtype == torch.float32 for w in out32.weights.values())
    mixed = inputs(torch.float32, returns=torch.randn(B, T, dtype=torch.float64))
    assert ppo(**mixed).loss.dtype == torch.float64


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_are_upcast_to_float32(ppo, low):
    x = {
        k: (v.detach().to(low) if v.is_floating_point() else v)
        for k, v in inputs(torch.float32).items()
    }
    out = ppo(**x)
    assert out.loss.dtype == torch.float32
    reference_loss = reference(
        {k: (v.float() if v.is_floating_point() else v) for k, v in x.items()}
    )["loss"]
    torch.testing.assert_close(out.loss, reference_loss, rtol=1e-6, atol=1e-6)


def test_masks_accept_float_zero_one_tensors(ppo):
    x = inputs()
    as_float = dict(x, mask=x["mask"].double())
    torch.testing.assert_close(ppo(**as_float).loss, ppo(**x).loss)


def test_optional_mask_defaults_to_all_ones(ppo):
    x = inputs()
    everything = dict(x, mask=torch.ones(B, T, dtype=torch.bool))
    without = {k: v for k, v in x.items() if k != "mask"}
    torch.testing.assert_close(ppo(**without).loss, ppo(**everything).loss)


def test_all_masked_batch_gives_zero_not_nan(ppo):
    out = ppo(**inputs(mask=torch.zeros(B, T, dtype=torch.bool)))
    assert out.terms["policy"].item() == 0 and out.terms["value"].item() == 0


def test_params_at_load_with_set_params_and_per_call(write_spec):
    path = write_spec(PPO_LIKE)
    x = inputs()
    expected = reference(x, clip_low=0.05, vf_coef=2.0)["loss"]
    at_load = lossdsl.load(path, params={"clip_low": 0.05, "vf_coef": 2.0})
    torch.testing.assert_close(at_load(**x).loss, expected)
    later = lossdsl.load(path)
    later.set_params(clip_low=0.05, vf_coef=2.0)
    torch.testing.assert_close(later(**x).loss, expected)
    once = lossdsl.load(path)
    torch.testing.assert_close(once(**x, params={"clip_low": 0.05, "vf_coef": 2.0}).loss, expected)
    torch.testing.assert_close(once(**x).loss, reference(x)["loss"])  # only for that call


def test_overriding_a_scheduled_param_replaces_the_schedule(ppo):
    out = ppo(**inputs(), step=5000, params={"ent_coef": 0.25})
    assert out.weights["entropy"].item() == -0.25
    assert ppo(**inputs(), step=5000).weights["entropy"].item() == pytest.approx(-0.005)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"clip_lo": 0.1}, "`clip_lo` is not a param of ppo_like"),
        ({"clip_low": 1.5}, "param `clip_low` = 1.5 is outside its range [0, 1]"),
        ({"vf_coef": float("nan")}, "param `vf_coef` = nan is outside its range [0, inf)"),
        ({"vf_coef": "big"}, "param `vf_coef` takes a number"),
    ],
)
def test_bad_params_are_input_errors(ppo, bad, message):
    with pytest.raises(lossdsl.InputError) as error:
        ppo.set_params(**bad)
    assert message in str(error.value)
    with pytest.raises(lossdsl.InputError):
        ppo(**inputs(), params=bad)


def test_wrong_shape_names_the_input_expected_dims_and_bound_sizes(ppo):
    x = inputs(actions=torch.randint(0, V, (B, T - 1)))
    with pytest.raises(lossdsl.InputError) as error:
        ppo(**x)
    assert str(error.value) == (
        f"input `actions` expects int[B, T] with B={B}, T={T} (bound by `logits`), "
        f"got torch.int64 tensor of shape ({B}, {T - 1})"
    )


def test_wrong_dtype_and_missing_and_unknown_inputs(ppo):
    with pytest.raises(lossdsl.InputError, match=r"input `actions` expects int\[B, T\]"):
        ppo(**inputs(actions=torch.zeros(B, T)))
    x = inputs()
    del x["returns"]
    with pytest.raises(lossdsl.InputError, match="missing input `returns` of ppo_like"):
        ppo(**x)
    with pytest.raises(lossdsl.InputError, match="has no input `reward`"):
        ppo(**inputs(), reward=torch.zeros(B))
    with pytest.raises(lossdsl.InputError, match="expects a tensor"):
        ppo(**inputs(returns=[1.0, 2.0]))


def test_input_errors_are_value_errors():
    assert issubclass(lossdsl.InputError, ValueError)


def test_step_may_be_a_tensor(ppo):
    x = inputs()
    a = ppo(**x, step=torch.tensor(2500)).weights["entropy"]
    b = ppo(**x, step=2500).weights["entropy"]
    assert a.item() == b.item()


def test_static_choice_is_chosen_at_load_and_rebuilt_by_set_params(write_spec):
    path = write_spec("""
        loss choose
        input x : float[N] grad
        param reduction = "mean" in {"mean", "sum"}
        term t = select(reduction, mean = mean(x), sum = sum(x))
    """)
    x = torch.arange(4.0)
    assert lossdsl.load(path)(x=x).loss.item() == 1.5
    summed = lossdsl.load(path, params={"reduction": "sum"})
    assert summed(x=x).loss.item() == 6.0
    summed.set_params(reduction="mean")
    assert summed(x=x).loss.item() == 1.5
    with pytest.raises(lossdsl.InputError, match="must be one of"):
        summed.set_params(reduction="max")


def test_a_bad_static_choice_at_load_is_the_callers_input_error_as_in_set_params():
    with pytest.raises(lossdsl.InputError) as error:
        lossdsl.load("dpo", params={"loss_type": "nope"})
    assert str(error.value).startswith("`loss_type` must be one of 'sigmoid', 'hinge', 'ipo'")
    assert str(error.value).endswith("got 'nope'")
    with pytest.raises(lossdsl.InputError, match="`loss_type` must be one of"):
        lossdsl.load("dpo").set_params(loss_type="nope")
    assert lossdsl.load("dpo", params={"loss_type": "ipo"}).choices == {"loss_type": "ipo"}


def test_leading_dims_bind_once_for_every_input(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss ell
        input x : float[..., C] grad
        input y : float[...]
        term t = mean(sum(x, dim=C) * y)
    """)
    )
    x, y = torch.randn(2, 3, 4), torch.randn(2, 3)
    torch.testing.assert_close(loss_fn(x=x, y=y).loss, (x.sum(-1) * y).mean())
    with pytest.raises(lossdsl.InputError, match=r"\.\.\. = \(2, 3\)"):
        loss_fn(x=x, y=torch.randn(3, 2))


def test_module_moves_with_to_and_keeps_param_values(ppo):
    ppo.set_params(vf_coef=1.25)
    moved = ppo.to(torch.float32)  # params are carried in float64 whatever `.to` does
    assert moved(**inputs()).weights["value"].item() == 1.25
    assert moved.param_values.dtype == torch.float64


def test_shapes_that_only_clash_inside_the_graph_are_input_errors(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss clash
        input x : float[N] grad
        input y : float[...]
        term t = mean(x - y)
    """)
    )
    with pytest.raises(
        lossdsl.InputError, match=r"clash: the inputs do not fit together \(x: \(2,\), y: \(3,\)\)"
    ):
        loss_fn(x=torch.randn(2), y=torch.randn(3))


def test_loading_a_spec_with_hazards_warns_with_the_rendered_diagnostic(write_spec):
    path = write_spec("""
        loss hazardous
        input p : float[N] grad in [0, 1]
        term t = -mean(log(p))
    """)
    with pytest.warns(lossdsl.LossSpecWarning, match=r"W300 log of a value that can be 0"):
        lossdsl.load(path)
    with pytest.warns(lossdsl.LossSpecWarning, match="W300"):  # again, from the IR cache
        lossdsl.load(path)


def test_standard_specs_load_without_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", lossdsl.LossSpecWarning)
        for name in ("ppo", "grpo", "dpo", "cross_entropy", "huber", "reinforce"):
            lossdsl.load(name)
