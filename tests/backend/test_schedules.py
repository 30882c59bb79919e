"""Schedules of `step`: the compiled graph, the scalar evaluator and LANGUAGE.md's formulas
agree, and `lossdsl explain` prints each schedule's value at a few steps."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

import lossdsl
from lossdsl.cli import app
from lossdsl.passes.evaluate import scalar_value


def u(step: float, steps: float, begin: float = 0.0) -> float:
    return min(max((step - begin) / steps, 0.0), 1.0)


# Each schedule with the formula LANGUAGE.md gives for it.
SCHEDULES = {
    "constant(0.3)": lambda s: 0.3,
    "linear(1.0, 0.2, steps=100)": lambda s: 1.0 + (0.2 - 1.0) * u(s, 100),
    "linear(0.0, 2.0, steps=50, begin=20)": lambda s: 2.0 * u(s, 50, 20),
    "cosine(1.0, 0.1, steps=100)": lambda s: 0.1 + 0.9 * (1 + math.cos(math.pi * u(s, 100))) / 2,
    "exponential(1.0, 0.01, steps=100)": lambda s: 0.01 ** u(s, 100),
    "warmup(steps=40)": lambda s: u(s, 40),
    "piecewise([10, 30], [1.0, 0.5, 0.25])": lambda s: 1.0 if s < 10 else 0.5 if s < 30 else 0.25,
    "0.5 * warmup(steps=10) + linear(0.0, 1.0, steps=100)": lambda s: 0.5 * u(s, 10) + u(s, 100),
}
STEPS = [0, 5, 10, 19, 20, 30, 45, 70, 100, 150]


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_schedule_values_agree_with_the_formula(write_spec, schedule):
    path = write_spec(f"""
        loss scheduled
        input x : float[N] grad
        param w = {schedule}
        term t = mean(x)
        minimize w * t
    """)
    loss_fn = lossdsl.load(path)
    ir = lossdsl.build_ir(str(path))
    weight_node = ir.weights["t"]
    x = torch.ones(3, dtype=torch.float64)
    for step in STEPS:
        expected = SCHEDULES[schedule](step)
        graph = loss_fn(x=x, step=step).weights["t"].item()
        assert graph == pytest.approx(expected, rel=1e-12, abs=1e-15), step
        assert scalar_value(ir, weight_node, step) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_explain_prints_schedule_values():
    result = CliRunner().invoke(app, ["explain", "ppo"])
    assert result.exit_code == 0
    assert "ent_coef: 0 → 0.01, 2500 → 0.0075, 5000 → 0.005, 10000 → 0" in result.output
