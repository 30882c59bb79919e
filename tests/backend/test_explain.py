"""`lossdsl explain` of a spec that adapts: each state with its update rule as written, each
`ema` with the average it keeps, each learned param."""

from __future__ import annotations

from typer.testing import CliRunner

from lossdsl.cli import app

SPEC = """
loss adapting
input pred   : float[N] grad
input target : float[N]
param s = 0.25 learned in [-5, 5]
let mse = mean(square(pred - target))
state beta = 1.0 in [0.01, 10]  # the controller
    update beta * (1 + clamp(mse - 1, -0.2, 0.2))
term fit = mse / max(ema(detach(mse), 0.9), 1e-8)
term reg = s
minimize beta * exp(-s) * fit + reg
"""


def test_explain_shows_each_states_update_rule_each_ema_and_each_learned_param(write_spec):
    result = CliRunner().invoke(app, ["explain", str(write_spec(SPEC))])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    start = lines.index("states (kept across calls, updated after each call in training mode):")
    assert lines[start + 1 : start + 5] == [
        "  state beta = 1.0 in [0.01, 10] update beta * (1 + clamp(mse - 1, -0.2, 0.2))",
        "  fit.ema: ema(detach(mse), 0.9): m ← 0.9·m + 0.1·x, n ← n + 1; it reads"
        " m / (1 − 0.9ⁿ) (x before the first training call)",
        "learned params (nn.Parameter, trained with the model):",
        "  param s = 0.25 learned in [-5, 5]",
    ]
