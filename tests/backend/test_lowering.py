"""The generated fx code reads like the spec."""

from __future__ import annotations

import torch

import lossdsl


def test_generated_code_uses_the_specs_names(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss named
        input logits  : float[B, V] grad
        input actions : int[B]
        param scale = 2.0
        let logp  = log_softmax(logits, dim=V)
        let picked = gather(logp, actions, dim=V)
        term nll = -mean(picked) * scale
        metric confidence = mean(exp(picked))
    """)
    )
    code = loss_fn.code
    assert "def forward(self, logits, actions, step, params):" in code
    for name in ("logp = torch.log_softmax(", "picked = ", "nll = ", "scale = ", "confidence = "):
        assert name in code, name


def test_softmax_family_of_the_same_logits_is_computed_once(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss shared
        input logits : float[B, V] grad
        input target : int[B]
        term nll = -mean(gather(log_softmax(logits, dim=V), target, dim=V))
        term ent = mean(entropy(logits, dim=V))
    """)
    )
    assert loss_fn.code.count("torch.log_softmax(") == 1


def test_repeated_masked_means_count_the_mask_once(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss counted
        input x : float[N] grad
        input m : bool[N]
        def masked_mean(v, mask) = sum(v, where=mask) / max(count(mask), 1)
        term a = masked_mean(x, m)
        term b = masked_mean(square(x), m)
    """)
    )
    assert loss_fn.code.count("m.to(dtype)") == 1
    x, m = torch.randn(5), torch.tensor([1, 0, 1, 1, 0], dtype=torch.bool)
    out = loss_fn(x=x, m=m)
    torch.testing.assert_close(out.terms["b"], (x[m] ** 2).mean())


def test_metrics_record_no_gradient(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss metered
        input x : float[N] grad
        let y = exp(x)
        term t = mean(y)
        metric big = max(y * 2)
    """)
    )
    x = torch.randn(4, requires_grad=True)
    out = loss_fn(x=x)
    assert out.metrics["big"].grad_fn is None
    assert "detach" in loss_fn.code


def test_constant_metrics_and_constant_select_branches_are_tensors(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss constants
        input x : float[N] grad
        param mode = "zero" in {"zero", "mean"}
        term t = mean(square(x))
        metric m = 0.5
        metric chosen = select(mode, zero = 0.0, mean = mean(x))
    """)
    )
    out = loss_fn(x=torch.randn(4, requires_grad=True))
    assert out.metrics["m"].item() == 0.5 and out.metrics["chosen"].item() == 0.0


def test_comparison_used_as_condition_and_as_number_stays_bool_for_where(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss shared_condition
        input x : float[N] grad
        let small = x < 0.5
        term t = mean(where(small, x, 2 * x)) + mean(small)
    """)
    )
    x = torch.tensor([0.0, 1.0, 0.25, 2.0], dtype=torch.float64, requires_grad=True)
    expected = torch.where(x < 0.5, x, 2 * x).mean() + (x < 0.5).double().mean()
    torch.testing.assert_close(loss_fn(x=x).loss, expected)


def test_a_coefficient_of_zero_turns_off_an_infinite_value_in_terms_and_weights(write_spec):
    """`param * x` and `weight * term` are 0 when the param or weight is 0, even where x or the
    term is infinite (0·inf is NaN in IEEE arithmetic); gradients stay finite where the
    switched-off value's own derivative is (as for a mean of log-probabilities)."""
    loss_fn = lossdsl.load(
        write_spec("""
        loss switched
        input x : float[N] grad
        param w = 0.0 in [0, inf)
        param v = 0.0 in [0, inf)
        term fit     = mean(square(clamp(x, min=-10))) + w * sum(x)
        term barrier = -sum(x)
        minimize fit + v * barrier
    """)
    )
    x = torch.tensor([-float("inf"), 2.0], requires_grad=True)
    out = loss_fn(x=x)
    assert out.loss.item() == 52.0 and out.terms["fit"].item() == 52.0
    assert out.terms["barrier"].item() == float("inf")  # computed and reported, weight 0
    out.loss.backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 2.0]))
    finite = torch.tensor([1.0, 2.0])
    on = loss_fn(x=finite, params={"w": 0.5, "v": 0.25})
    torch.testing.assert_close(on.loss, torch.tensor(2.5 + 0.5 * 3.0 - 0.25 * 3.0))
