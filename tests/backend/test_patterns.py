"""Pattern lowerings (backend/patterns.py): the fused form is in the generated code, and its
values and gradients are those of the one-op-at-a-time lowering, in float64."""

from __future__ import annotations

import pytest
import torch

import lossdsl
from lossdsl.backend import lowering


def unfused(monkeypatch: pytest.MonkeyPatch, *args, **kwargs):
    """The same spec lowered with no patterns."""
    with monkeypatch.context() as patched:
        patched.setattr(lowering, "PATTERNS", {})
        return lossdsl.load(*args, **kwargs)


def values_and_grads(module, grad_input: str, **inputs: torch.Tensor):
    leaf = inputs[grad_input].detach().clone().requires_grad_(True)
    out = module(**{**inputs, grad_input: leaf})
    out.loss.backward()
    return out, leaf.grad


def assert_same(fused, plain, grad_input: str, **inputs: torch.Tensor) -> None:
    out, grad = values_and_grads(fused, grad_input, **inputs)
    ref, ref_grad = values_and_grads(plain, grad_input, **inputs)
    torch.testing.assert_close(out.loss, ref.loss, rtol=1e-12, atol=1e-12)
    for name in ref.terms:
        torch.testing.assert_close(out.terms[name], ref.terms[name], rtol=1e-12, atol=1e-12)
    for name in ref.metrics:
        torch.testing.assert_close(out.metrics[name], ref.metrics[name], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)


def cross_entropy_inputs(shape: tuple[int, ...], classes: int, ignored: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, classes, shape, generator=gen)
    target[torch.rand(shape, generator=gen) < ignored] = -100
    logits = torch.randn(*shape, classes, generator=gen, dtype=torch.float64) * 3
    return {"input": logits, "target": target}


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("shape", [(7,), (3, 5), ()])
def test_cross_entropy_gathers_with_nll_loss(monkeypatch, smoothing, shape):
    params = {"label_smoothing": smoothing}
    fused = lossdsl.load("cross_entropy", params=params)
    plain = unfused(monkeypatch, "cross_entropy", params=params)
    assert "nll_loss" in fused.code and "torch.gather" not in fused.code
    assert "torch.gather" in plain.code and "nll_loss" not in plain.code
    assert_same(fused, plain, "input", **cross_entropy_inputs(shape, 11, ignored=0.3))


def test_cross_entropy_over_only_ignored_targets_is_zero_with_zero_grads(monkeypatch):
    fused = lossdsl.load("cross_entropy", params={"label_smoothing": 0.1})
    plain = unfused(monkeypatch, "cross_entropy", params={"label_smoothing": 0.1})
    inputs = cross_entropy_inputs((4,), 6, ignored=1.0)
    out, grad = values_and_grads(fused, "input", **inputs)
    assert out.loss.item() == 0.0 and torch.all(grad == 0)
    assert_same(fused, plain, "input", **inputs)


def test_cross_entropy_matches_torch(monkeypatch):
    inputs = cross_entropy_inputs((9,), 13, ignored=0.3)
    fused = lossdsl.load("cross_entropy", params={"label_smoothing": 0.2})
    expected = torch.nn.functional.cross_entropy(
        inputs["input"], inputs["target"], ignore_index=-100, label_smoothing=0.2
    )
    torch.testing.assert_close(fused(**inputs).loss, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("z_loss", [1e-4, 0.5])
def test_cross_entropy_z_loss_adds_the_squared_logsumexp_of_valid_rows(z_loss):
    """PaLM's z-loss: z * logsumexp(x)^2 per valid row, averaged with the cross entropy."""
    inputs = cross_entropy_inputs((9,), 13, ignored=0.3)
    module = lossdsl.load("cross_entropy", params={"label_smoothing": 0.1, "z_loss": z_loss})
    out, grad = values_and_grads(module, "input", **inputs)
    logits = inputs["input"].clone().requires_grad_(True)
    valid = inputs["target"] != -100
    expected = (
        torch.nn.functional.cross_entropy(
            logits, inputs["target"], ignore_index=-100, label_smoothing=0.1
        )
        + z_loss * (torch.logsumexp(logits, -1)[valid] ** 2).mean()
    )
    expected.backward()
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, logits.grad, rtol=1e-12, atol=1e-12)
    penalty = z_loss * (torch.logsumexp(inputs["input"], -1)[valid] ** 2).mean()
    torch.testing.assert_close(out.terms["z_penalty"], penalty, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_compiled_label_smoothing_takes_the_mean_of_logits_minus_a_shared_logsumexp(
    monkeypatch, smoothing
):
    """Under compile, mean(log_softmax(x)) is mean(x) - logsumexp(x), the logsumexp shared
    with the log_softmax and the z-loss: passes fewer, the same values and gradients."""
    from tests.support import CountingBackend

    backend = CountingBackend()
    params = {"label_smoothing": smoothing, "z_loss": 1e-3}
    compiled = lossdsl.load("cross_entropy", params=params, compile=True, backend=backend)
    code = compiled.code
    assert code.count("torch.logsumexp(") == 1 and "log_softmax" not in code
    assert "input_.mean(-1)" in code  # the mean reads the logits, not the log-probabilities
    assert "torch.nn.functional.nll_loss(input_" in code or "input_.reshape(" in code
    plain = unfused(monkeypatch, "cross_entropy", params=params)
    assert_same(compiled, plain, "input", **cross_entropy_inputs((3, 5), 11, ignored=0.3))
    assert backend.compilations == 1


def test_shared_log_softmax_feeds_both_the_gather_and_the_entropy(write_spec, monkeypatch):
    text = """
        loss shared
        input logits  : float[B, T, V] grad
        input actions : int[B, T]
        input mask    : bool[B, T]
        let logp = gather(log_softmax(logits, dim=V), actions, dim=V)
        term nll = -mean(logp, where=mask)
        term ent = mean(entropy(logits, dim=V), where=mask)
        metric top = mean(exp(logp), where=mask)
    """
    fused = lossdsl.load(write_spec(text))
    plain = unfused(monkeypatch, write_spec(text, "plain.loss"))
    assert fused.code.count("torch.log_softmax(") == 1 and "nll_loss" in fused.code
    gen = torch.Generator().manual_seed(1)
    inputs = {
        "logits": torch.randn(2, 5, 9, generator=gen, dtype=torch.float64),
        "actions": torch.randint(0, 9, (2, 5), generator=gen),
        "mask": torch.rand(2, 5, generator=gen) < 0.7,
    }
    assert_same(fused, plain, "logits", **inputs)
    assert not fused(**inputs).metrics["top"].requires_grad


def test_gather_over_a_dim_that_is_not_last_is_left_alone(write_spec):
    module = lossdsl.load(
        write_spec("""
        loss leading
        input logits : float[V, B] grad
        input target : int[B]
        term nll = -mean(gather(log_softmax(logits, dim=V), target, dim=V))
    """)
    )
    assert "torch.gather" in module.code and "nll_loss" not in module.code


def huber_inputs(delta: float, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(40, generator=gen, dtype=torch.float64)
    residual = torch.randn(40, generator=gen, dtype=torch.float64) * 2 * delta
    residual[:4] = torch.tensor([delta, -delta, 0.0, 0.5 * delta], dtype=torch.float64)
    return {"input": target + residual, "target": target}


HUBER_BRANCHES = """
    loss huber_branches
    input input  : float[N] grad
    input target : float[N]
    param delta = 1.0 in (0, inf)
    let r = input - target
    term h = mean(where(abs(r) < delta, 0.5 * square(r), delta * (abs(r) - 0.5 * delta)))
"""


@pytest.mark.parametrize("delta", [0.25, 1.0, 3.0])
def test_huber_branches_lower_to_min_not_where(write_spec, monkeypatch, delta):
    fused = lossdsl.load(write_spec(HUBER_BRANCHES), params={"delta": delta})
    plain = unfused(monkeypatch, write_spec(HUBER_BRANCHES, "plain.loss"), params={"delta": delta})
    assert "torch.minimum" in fused.code and "torch.where" not in fused.code
    assert "torch.where" in plain.code
    inputs = huber_inputs(delta)
    assert_same(fused, plain, "input", **inputs)
    expected = torch.nn.functional.huber_loss(inputs["input"], inputs["target"], delta=delta)
    torch.testing.assert_close(fused(**inputs).loss, expected, rtol=1e-12, atol=1e-12)


def test_huber_branches_with_a_constant_delta_and_at_exact_ties(write_spec, monkeypatch):
    text = """
        loss huber_const
        input r : float[N] grad
        term h = sum(where(abs(r) < 2, 0.5 * square(r), 2 * (abs(r) - 0.5 * 2)))
    """
    fused = lossdsl.load(write_spec(text))
    plain = unfused(monkeypatch, write_spec(text, "plain.loss"))
    assert "torch.where" not in fused.code
    r = torch.tensor([-3.0, -2.0, -1.0, 0.0, 1e-300, 1.5, 2.0, 7.0], dtype=torch.float64)
    assert_same(fused, plain, "r", r=r)


def test_huber_op_lowers_to_min_and_equals_torch(write_spec):
    loss_fn = lossdsl.load("huber", params={"delta": 0.7})
    assert "torch.where" not in loss_fn.code and "torch.minimum" in loss_fn.code
    inputs = huber_inputs(0.7)
    x = inputs["input"].clone().requires_grad_()
    y = inputs["input"].clone().requires_grad_()
    ours = loss_fn(input=x, target=inputs["target"]).loss
    theirs = torch.nn.functional.huber_loss(y, inputs["target"], delta=0.7)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-15)


def test_log_of_sum_of_exp_lowers_to_logsumexp(write_spec):
    module = lossdsl.load(
        write_spec("""
        loss lse
        input x : float[B, C] grad
        term t = mean(log(sum(exp(x), dim=C)))
    """)
    )
    assert "torch.logsumexp" in module.code
    x = torch.randn(3, 4, dtype=torch.float64)
    expected = torch.log(torch.exp(x).sum(-1)).mean()
    torch.testing.assert_close(module(x=x).loss, expected, rtol=1e-12, atol=1e-12)
