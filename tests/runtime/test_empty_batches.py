"""An empty batch is valid input: every standard spec runs on a zero-size dim, eager and
compiled, with a finite loss (0 when every input is empty), finite gradients, the documented
metrics, and nothing printed."""

from __future__ import annotations

import math

import pytest
import torch

import lossdsl
from lossdsl.resources import stdlib_index
from tests.support import CountingBackend, spec_inputs


def named_dims(loss_fn) -> list[str]:
    dims = {d for s in loss_fn.SPEC["inputs"] for d in s["dims"] if isinstance(d, str)}
    return sorted(dims)


def class_dims(loss_fn) -> set[str]:
    """Dims that integer inputs index (`in [0, V)`, or C for cross-entropy's target)."""
    found = set()
    for spec in loss_fn.SPEC["inputs"]:
        if spec["dtype"] == "int":
            found |= {d for d in named_dims(loss_fn) if d in ("V", "C")}
    return found


def empty_cases() -> list[tuple[str, str]]:
    cases = []
    for name in stdlib_index():
        loss_fn = lossdsl.load(name)
        cases += [(name, dim) for dim in named_dims(loss_fn) if dim not in class_dims(loss_fn)]
    return cases


# Embeddings of no features are not an empty batch: every similarity is 0, and the loss is
# that of equal scores (log N for InfoNCE, the margin for a triplet), not 0.
FEATURE_DIMS = {"D"}


def sizes_with(loss_fn, zero: str) -> dict:
    sizes = {d: 3 for d in named_dims(loss_fn)}
    sizes["..."] = [3]
    if zero == "...":
        sizes["..."] = [0]
    else:
        sizes[zero] = 0
    return sizes


@pytest.mark.parametrize("name, zero", empty_cases())
def test_a_zero_size_dim_gives_a_finite_loss_and_gradients_and_prints_nothing(name, zero, capfd):
    loss_fn = lossdsl.load(name)
    x = spec_inputs(loss_fn, sizes_with(loss_fn, zero))
    out = loss_fn(**x)
    assert math.isfinite(out.loss.item())
    if zero not in FEATURE_DIMS and all(t.numel() == 0 for t in x.values() if t.dim() > 0):
        assert out.loss.item() == 0
    if out.loss.requires_grad:
        out.loss.backward()
    for tensor in x.values():
        assert tensor.grad is None or torch.isfinite(tensor.grad).all()
    assert capfd.readouterr().err == ""


def test_ppo_on_an_empty_batch_reports_the_documented_metrics():
    loss_fn = lossdsl.load("ppo")
    out = loss_fn(**spec_inputs(loss_fn, {"B": 0, "T": 5, "V": 7}))
    assert out.loss.item() == 0 and out.terms["policy"].item() == 0
    assert out.metrics["ratio_min"].item() == math.inf  # min over nothing
    assert out.metrics["ratio_max"].item() == -math.inf
    assert out.metrics["ratio_mean"].item() == 0 and out.metrics["clip_frac"].item() == 0


@pytest.mark.parametrize("name, zero", empty_cases())
def test_compiled_modules_run_empty_batches_uncompiled_with_the_same_results(name, zero, capfd):
    backend = CountingBackend()
    compiled = lossdsl.load(name, compile=True, backend=backend)
    eager = lossdsl.load(name)
    x = spec_inputs(eager, sizes_with(eager, zero))
    out, expected = compiled(**x), eager(**x)
    torch.testing.assert_close(out.loss, expected.loss)
    for metric, value in expected.metrics.items():
        torch.testing.assert_close(out.metrics[metric], value)
    assert backend.compilations == 0
    assert capfd.readouterr().err == ""
