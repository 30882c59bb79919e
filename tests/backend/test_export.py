"""`lossdsl compile --export OUT.pt2`: loadable with lossdsl and with plain torch.export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import lossdsl
from lossdsl.cli import app

SPEC = """
loss exported
input logits  : float[B, T, V] grad
input actions : int[B, T]
input mask    : bool[B, T] = 1
param temperature = 1.0 in (0, inf)
param bonus = warmup(steps=10)
let logp = log_softmax(logits / temperature, dim=V)
term nll = -sum(gather(logp, actions, dim=V), where=mask) / max(count(mask), 1)
term ent = mean(entropy(logits, dim=V), where=mask)
minimize nll - bonus * ent
metric per_seq = sum(gather(logp, actions, dim=V), dim=T)
"""


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("export")
    spec = folder / "exported.loss"
    spec.write_text(SPEC)
    out = folder / "exported.pt2"
    result = CliRunner().invoke(app, ["compile", str(spec), "--export", str(out), "--dtype", "f64"])
    assert result.exit_code == 0, result.output
    return spec, out


def inputs(b: int, t: int, v: int) -> dict:
    torch.manual_seed(b * 100 + t)
    return {
        "logits": torch.randn(b, t, v, dtype=torch.float64, requires_grad=True),
        "actions": torch.randint(0, v, (b, t)),
        "mask": torch.rand(b, t) > 0.3,
    }


@pytest.mark.parametrize("b, t, v", [(2, 3, 5), (4, 7, 6)])
def test_pt2_gives_the_values_and_gradients_of_load(program, b, t, v):
    spec, pt2 = program
    x, y = inputs(b, t, v), inputs(b, t, v)
    ours = lossdsl.load(str(spec))(**x, step=4, params={"temperature": 0.7})
    theirs = lossdsl.load(str(pt2))(**y, step=4, params={"temperature": 0.7})
    ours.loss.backward()
    theirs.loss.backward()
    torch.testing.assert_close(theirs.loss, ours.loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(y["logits"].grad, x["logits"].grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(theirs.metrics["per_seq"], ours.metrics["per_seq"])
    assert theirs.weights["ent"].item() == -0.4


def test_pt2_loads_with_plain_torch_export(program):
    _, pt2 = program
    module = torch.export.load(str(pt2)).module()
    x = inputs(3, 4, 5)
    params = torch.tensor([1.0, float("nan")], dtype=torch.float64)
    loss, *_ = module(
        x["logits"], x["actions"], x["mask"], torch.tensor(0.0, dtype=torch.float64), params
    )
    expected = lossdsl.load("cross_entropy")(
        input=x["logits"][x["mask"]], target=x["actions"][x["mask"]]
    ).loss
    torch.testing.assert_close(loss, expected)


def test_pt2_keeps_the_input_checks(program):
    _, pt2 = program
    loss_fn = lossdsl.load(str(pt2))
    with pytest.raises(lossdsl.InputError, match="input `actions` expects int"):
        loss_fn(logits=torch.randn(2, 3, 4), actions=torch.zeros(2, 3))
