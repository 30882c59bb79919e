"""`lossdsl analyze`: term magnitudes, gradient norms equal to autograd's, the first
non-finite node named with its line."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import lossdsl
from lossdsl.cli import app
from lossdsl.tools import ToolError
from lossdsl.tools.analyze import analyze, parse_dims, synthetic_inputs

PLANTED = """
loss planted
input p : float[N] grad in [0, 1]
input y : float[N]

let r = p - y
term fit = mean(square(r))
term nll = -mean(log(p))

minimize fit + 0.01 * nll
"""


def test_a_log_of_a_value_that_reaches_zero_is_named_with_its_line(
    write_spec: Callable[..., Path],
) -> None:
    ir = lossdsl.build_ir(write_spec(PLANTED, "planted.loss"))
    report = analyze(ir, dims={"N": 16})
    forward, backward = report.non_finite
    assert (forward.phase, forward.op, forward.text, forward.line, forward.col) == (
        "forward",
        "log",
        "log(p)",
        7,
        18,
    )
    assert forward.inf == 1 and forward.elements == 16  # the synthetic p holds one 0
    assert (backward.phase, backward.op, backward.line, backward.argument) == (
        "backward",
        "log",
        7,
        "p",
    )
    assert "planted.loss:7:18" in report.render()


def test_a_sqrt_at_zero_is_found_on_the_way_back_only(write_spec: Callable[..., Path]) -> None:
    ir = lossdsl.build_ir(
        write_spec(
            """
            loss root
            input x : float[N] grad in [0, inf)
            let s = sqrt(x)
            term t = mean(s)
            """
        )
    )
    (backward,) = analyze(ir).non_finite
    assert (backward.phase, backward.op, backward.text, backward.line) == (
        "backward",
        "sqrt",
        "s",
        3,
    )
    assert backward.argument == "x"


def test_ppo_gradient_norms_equal_autograds() -> None:
    ir = lossdsl.build_ir("ppo")
    inputs = synthetic_inputs(ir, {"B": 3, "T": 5, "V": 7}, seed=1)
    inputs = {
        k: v.detach().double().requires_grad_(v.requires_grad) if v.is_floating_point() else v
        for k, v in inputs.items()
    }
    report = analyze(ir, inputs)
    assert report.non_finite == []

    module = lossdsl.load("ppo")
    grads = [inputs["logits"], inputs["values"]]

    def gradient(**params: float) -> list[torch.Tensor]:
        out = module(**inputs, params=params)
        return list(torch.autograd.grad(out.loss, grads))

    policy = gradient(vf_coef=0.0, ent_coef=0.0)
    value = [a - b for a, b in zip(gradient(vf_coef=1.0, ent_coef=0.0), policy, strict=True)]
    entropy = [b - a for a, b in zip(gradient(vf_coef=0.0, ent_coef=1.0), policy, strict=True)]
    kl_only = gradient(vf_coef=0.0, ent_coef=0.0, kl_coef=1.0)
    kl = [b - a for a, b in zip(policy, kl_only, strict=True)]
    expected = {"policy": policy, "value": value, "entropy": entropy, "kl": kl}
    out = module(**inputs)
    for term in report.terms:
        assert term.value == pytest.approx(float(out.terms[term.name]), rel=1e-9)
        assert term.weight == pytest.approx(float(out.weights[term.name]), rel=1e-9)
        for stats, reference in zip(term.gradients, expected[term.name], strict=True):
            assert stats.norm == pytest.approx(float(reference.norm()), rel=1e-6, abs=1e-12)
            assert stats.max_abs == pytest.approx(float(reference.abs().max()), rel=1e-6, abs=1e-12)
            assert stats.weighted_norm == pytest.approx(abs(term.weight) * stats.norm)
    total = torch.autograd.grad(out.loss, grads)
    for stats, reference in zip(report.loss_gradients, total, strict=True):
        assert stats.norm == pytest.approx(float(reference.norm()), rel=1e-9)
        assert stats.zero_fraction == float((reference == 0).double().mean())
    assert sum(t.share for t in report.terms) == pytest.approx(1.0)


def test_synthetic_inputs_follow_dtypes_dims_and_ranges() -> None:
    ir = lossdsl.build_ir("ppo")
    inputs = synthetic_inputs(ir, {"B": 2, "V": 5}, seed=0)
    assert inputs["logits"].shape == (2, 8, 5)  # T was not given: 8
    assert inputs["logits"].dtype == torch.float32 and inputs["logits"].requires_grad
    assert inputs["actions"].dtype == torch.int64
    assert int(inputs["actions"].min()) >= 0 and int(inputs["actions"].max()) < 5
    assert float(inputs["old_logp"].max()) == 0.0  # the closed end of (-inf, 0] is taken
    assert inputs["mask"].dtype == torch.bool and bool(inputs["mask"].view(-1)[0])
    assert not inputs["advantages"].requires_grad


def test_weighted_terms_a_thousand_times_apart_are_a_warning(
    write_spec: Callable[..., Path],
) -> None:
    ir = lossdsl.build_ir(
        write_spec(
            """
            loss lopsided
            input x : float[N] grad in [1, 2]
            param w = 0.0001
            term big = mean(x)
            term small = mean(x)
            minimize big + w * small
            """
        )
    )
    (warning,) = analyze(ir).warnings
    assert "differ by 1e+04x" in warning and "`small`" in warning
    balanced = analyze(ir, params={"w": 0.5})
    assert balanced.warnings == []
    assert [t.share for t in balanced.terms] == pytest.approx([2 / 3, 1 / 3])


def test_dims_are_parsed_and_bad_ones_refused() -> None:
    assert parse_dims("B=8, T=64,V=1000") == {"B": 8, "T": 64, "V": 1000}
    with pytest.raises(ToolError, match="NAME=SIZE"):
        parse_dims("B=eight")
    with pytest.raises(ToolError, match="no dim Q"):
        synthetic_inputs(lossdsl.build_ir("ppo"), {"Q": 3})


def test_the_command_reads_a_saved_batch_and_prints_json(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(PLANTED, "planted.loss")
    batch = tmp_path / "batch.pt"
    torch.save({"p": torch.tensor([0.25, 0.5]), "y": torch.tensor([0.0, 1.0])}, batch)
    result = CliRunner().invoke(app, ["analyze", str(spec), "--inputs", str(batch), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["seed"] is None and report["shapes"] == {"p": [2], "y": [2]}
    fit = report["terms"][0]
    assert fit["value"] == pytest.approx((0.25**2 + 0.5**2) / 2)
    assert report["non_finite"] == []
    nll = report["terms"][1]
    assert nll["value"] == pytest.approx(-(math.log(0.25) + math.log(0.5)) / 2)


def test_the_command_reports_bad_inputs_without_a_traceback(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(PLANTED, "planted.loss")
    batch = tmp_path / "batch.pt"
    torch.save({"p": torch.ones(2, 3), "y": torch.ones(2)}, batch)
    result = CliRunner().invoke(app, ["analyze", str(spec), "--inputs", str(batch)])
    assert result.exit_code == 2
    assert "input `p` expects float[N]" in result.output
    bad_dims = CliRunner().invoke(app, ["analyze", str(spec), "--dims", "N"])
    assert bad_dims.exit_code == 2 and "--dims takes NAME=SIZE" in bad_dims.output
