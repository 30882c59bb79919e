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
    """The progress of a schedule; a span of no steps is over at once, from `begin` on."""
    if steps <= 0:
        return 1.0 if step >= begin else 0.0
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
    # no steps: the end value from `begin` on (was 0/0 = NaN at step 0)
    "linear(1.0, 0.0, steps=0)": lambda s: 0.0,
    "warmup(steps=0)": lambda s: 1.0,
    "cosine(1.0, 0.0, steps=0, begin=20)": lambda s: 1.0 if s < 20 else 0.0,
    "exponential(1.0, 0.01, steps=0, begin=10)": lambda s: 1.0 if s < 10 else 0.01,
    # a negative begin starts part-way through
    "linear(0.0, 1.0, steps=10, begin=-5)": lambda s: u(s, 10, -5),
    "exponential(-2.0, -0.5, steps=100)": lambda s: -2.0 * 0.25 ** u(s, 100),
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


@pytest.mark.parametrize("schedule", ["linear(1, 0, steps=s, begin=b)", "warmup(steps=s)"])
def test_schedule_params_set_at_run_time_agree_with_the_evaluator(write_spec, schedule):
    path = write_spec(f"""
        loss scheduled
        input x : float[N] grad
        param s = 10 in [0, 1000]
        param b = 0 in [-100, 100]
        param w = {schedule}
        term t = mean(x)
        minimize w * t
    """)
    loss_fn = lossdsl.load(path)
    ir = lossdsl.build_ir(str(path))
    x = torch.ones(3, dtype=torch.float64)
    for given in ({"s": 0.0, "b": 0.0}, {"s": 0.0, "b": 20.0}, {"s": 40.0, "b": -5.0}):
        for step in STEPS:
            graph = loss_fn(x=x, step=step, params=given).weights["t"].item()
            value = scalar_value(ir, ir.weights["t"], step, params=given)
            assert value is not None and math.isfinite(value)
            assert graph == pytest.approx(value, rel=1e-12, abs=1e-15), (given, step)


@pytest.mark.parametrize(
    ("declared", "warned"),
    [("in [0, 1]", True), ("in [-1, 1]", True), ("in [1e-3, 1]", False)],
)
def test_an_exponential_of_a_param_that_may_be_zero_is_w300(write_spec, declared, warned):
    path = write_spec(f"""
        loss scheduled
        input x : float[N] grad in [0, 1]
        param start = 0.5 {declared}
        param w = exponential(start, 0.01, steps=100)
        term t = mean(square(x))
        minimize w * t
    """)
    codes = [d.code for d in lossdsl.check(path)]
    assert codes == (["W300"] if warned else [])
