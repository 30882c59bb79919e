"""`lossdsl plot` and `lossdsl landscape`: images of the right size, curves that equal the
schedules and the losses they stand for."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import lossdsl
from lossdsl.cli import app
from lossdsl.tools import ToolError
from lossdsl.tools.analyze import synthetic_inputs
from lossdsl.tools.landscape import filter_normalised, landscape, plot_landscape
from lossdsl.tools.plot import DPI, FIGURE_WIDTH, PANEL_HEIGHT, parse_steps, plot_schedules

SCHEDULED = """
loss scheduled
input x : float[N] grad
param start = 0.2 in [0, 1]
param ramp = linear(start, 1.0, steps=1000)
param stages = piecewise([300, 700], [1.0, 0.5, 0.25])
term a = mean(square(x))
term b = mean(abs(x))
term c = mean(x)
minimize ramp * a + 0.1 * warmup(steps=500) * b + stages * c
"""


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_plotted_curves_equal_the_schedules_at_sample_steps(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    ir = lossdsl.build_ir(write_spec(SCHEDULED))
    output = tmp_path / "weights.png"
    curves, figure = plot_schedules(ir, 0, 1200, output, points=13)
    assert png_size(output) == (int(FIGURE_WIDTH * DPI), int(2 * PANEL_HEIGHT * DPI))
    params_axes, weights_axes = figure.axes
    drawn = {line.get_label(): line for line in params_axes.lines + weights_axes.lines}
    assert set(drawn) == {"ramp", "stages", "a", "b", "c"}  # `start` does not follow step
    module = lossdsl.load_text(SCHEDULED.strip())
    x = torch.randn(4)
    for index in (0, 3, 6, 10):
        step = float(drawn["a"].get_xdata()[index])
        weights = module(x=x, step=step).weights
        for term in ("a", "b", "c"):
            assert drawn[term].get_ydata()[index] == pytest.approx(float(weights[term]), abs=1e-6)
        # LANGUAGE.md: linear = start + (end - start) * clamp(step / steps, 0, 1)
        ramp = 0.2 + 0.8 * min(step / 1000, 1.0)
        assert drawn["ramp"].get_ydata()[index] == pytest.approx(ramp)
    steps = list(drawn["stages"].get_xdata())
    assert {299.0, 300.0, 699.0, 700.0} <= set(steps)  # both sides of each boundary
    values = dict(zip(steps, drawn["stages"].get_ydata(), strict=True))
    assert (values[299.0], values[300.0], values[700.0]) == (1.0, 0.5, 0.25)
    assert curves.steps == steps


def test_steps_are_parsed() -> None:
    assert parse_steps("0:10000") == (0, 10000)
    with pytest.raises(ToolError, match="START:STOP"):
        parse_steps("100:10")


MSE = """
loss square_error
input x : float[B, C] grad
input y : float[B, C]
term mse = mean(square(x - y))
"""


def test_directions_are_filter_normalised() -> None:
    x = torch.randn(5, 3, dtype=torch.float64)
    v = torch.randn(5, dtype=torch.float64)
    d = filter_normalised({"x": x, "v": v}, torch.Generator().manual_seed(0))
    assert torch.allclose(d["x"].norm(dim=-1), x.norm(dim=-1))  # row by row
    assert torch.allclose(d["v"].norm(), v.norm())  # a vector is one filter


def test_the_landscape_of_mse_is_the_parabola_along_each_direction(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    ir = lossdsl.build_ir(write_spec(MSE))
    inputs = synthetic_inputs(ir, {"B": 4, "C": 3}, seed=2)
    found = landscape(ir, inputs, seed=2, span=2.0, points=5, grid=3)
    x, y = inputs["x"].detach().double(), inputs["y"].double()
    d1, d2 = found.directions[0]["x"], found.directions[1]["x"]
    assert found.alphas == [-2.0, -1.0, 0.0, 1.0, 2.0]
    for a, total in zip(found.alphas, found.total, strict=True):
        assert total == pytest.approx(float(((x + a * d1 - y) ** 2).mean()), rel=1e-5)
    assert found.terms["mse"] == found.total
    for i, b in enumerate(found.grid):
        for j, a in enumerate(found.grid):
            expected = float(((x + a * d1 + b * d2 - y) ** 2).mean())
            assert found.surface[i][j] == pytest.approx(expected, rel=1e-5)
    output = tmp_path / "landscape.png"
    plot_landscape(ir, found, output)
    assert png_size(output) == (int(FIGURE_WIDTH * DPI), int(PANEL_HEIGHT * DPI))


def test_perturbed_inputs_stay_in_their_declared_range(write_spec: Callable[..., Path]) -> None:
    ir = lossdsl.build_ir(
        write_spec(
            """
            loss bounded
            input p : float[N] grad in [0, 1]
            term nll = -mean(log(clamp(p, min=1e-6)))
            """
        )
    )
    found = landscape(ir, seed=0, span=5.0, points=3, grid=0)
    assert all(value == value for value in found.total)  # no NaN: p never left [0, 1]


def test_the_commands_write_images_and_values(
    write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    spec = write_spec(MSE)
    runner = CliRunner()
    drawn = runner.invoke(
        app,
        ["landscape", str(spec), "-o", str(tmp_path / "l.png"), "--points", "3", "--grid", "0"]
        + ["--dims", "B=2,C=2", "--json"],
    )
    assert drawn.exit_code == 0, drawn.output
    values = json.loads(drawn.stdout)
    assert len(values["total"]) == 3 and values["grid"] == []
    plotted = runner.invoke(app, ["plot", "ppo", "-o", str(tmp_path / "w.svg"), "--points", "5"])
    assert plotted.exit_code == 0, plotted.output
    assert (tmp_path / "w.svg").read_text().lstrip().startswith("<?xml")
    refused = runner.invoke(app, ["plot", "ppo", "-o", str(tmp_path / "w.txt")])
    assert refused.exit_code == 2 and ".png or .svg or .pdf" in refused.output
