"""A spec that adapts, written out: the standalone `.py` and the `.pt2` program carry its
states and learned params (LANGUAGE.md "Version 2", State).

Each artifact is run over the same sequence of calls as `lossdsl.load` of the spec, and
must give the same losses, gradients (the learned param's too) and states; eval mode,
`reset_state` and a `state_dict` round trip in the middle of the sequence behave as they do
for the loaded module. In the exported program the states are a buffer the program mutates.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import lossdsl
from lossdsl.backend.standalone import standalone_source
from lossdsl.cli import app

SPEC = """
loss adaptive_fit
input pred   : float[N] grad
input target : float[N]
param s = 0.25 learned in [-5, 5]
let mse = mean(square(pred - target))
state beta = 1.0 in [0.01, 10] update beta * (1 + clamp(mse - 1, -0.2, 0.2))
term fit = mse / max(ema(detach(mse), 0.9), 1e-8)
term reg = s
minimize beta * exp(-s) * fit + reg
metric beta_before = beta
"""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("adaptive")
    spec = folder / "adaptive_fit.loss"
    spec.write_text(SPEC.lstrip())
    (folder / "adaptive_fit_module.py").write_text(standalone_source(lossdsl.build_ir(spec)))
    pt2 = folder / "adaptive_fit.pt2"
    result = CliRunner().invoke(app, ["compile", str(spec), "--export", str(pt2), "--dtype", "f64"])
    assert result.exit_code == 0, result.output
    return {"spec": spec, "py": folder / "adaptive_fit_module.py", "pt2": pt2}


def make(kind: str, artifacts: dict[str, Path]) -> torch.nn.Module:
    if kind == "py":
        found = importlib.util.spec_from_file_location("adaptive_fit_module", artifacts["py"])
        assert found is not None and found.loader is not None
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
        return module.AdaptiveFit()
    return lossdsl.load(str(artifacts[kind]))


def batch(index: int) -> dict[str, torch.Tensor]:
    """Errors that grow with the index, so that β rises and the average moves."""
    g = torch.Generator().manual_seed(index)
    scale = 0.3 + 0.4 * index
    pred = scale * torch.randn(7, generator=g, dtype=torch.float64)
    return {
        "pred": pred.requires_grad_(),
        "target": torch.randn(7, generator=g, dtype=torch.float64),
    }


def learned_param(loss_fn: torch.nn.Module) -> torch.Tensor:
    (parameter,) = loss_fn.parameters()
    return parameter


def run(loss_fn: torch.nn.Module, index: int) -> dict[str, object]:
    x = batch(index)
    out = loss_fn(**x)
    out.loss.backward()
    parameter = learned_param(loss_fn)
    grads = {"pred": x["pred"].grad, "s": parameter.grad.clone()}
    parameter.grad = None
    return {"loss": out.loss.detach(), "grads": grads, "states": out.states}


def assert_same(got: dict[str, object], want: dict[str, object]) -> None:
    torch.testing.assert_close(got["loss"], want["loss"], rtol=1e-12, atol=1e-14)
    for name in ("pred", "s"):
        torch.testing.assert_close(got["grads"][name], want["grads"][name], rtol=1e-12, atol=1e-14)
    assert set(got["states"]) == set(want["states"]) == {"beta", "s", "fit.ema"}
    for name, value in want["states"].items():
        torch.testing.assert_close(got["states"][name].double(), value, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["py", "pt2"])
def test_artifact_follows_the_loaded_module_over_a_sequence_of_calls(artifacts, kind):
    loaded, artifact = lossdsl.load(str(artifacts["spec"])), make(kind, artifacts)
    for index in range(6):
        assert_same(run(artifact, index), run(loaded, index))
    beta = float(loaded(**batch(6)).metrics["beta_before"])
    assert beta > 1.2  # the controller moved: the test compares more than the start
    assert float(artifact(**batch(6)).metrics["beta_before"]) == pytest.approx(beta, rel=1e-12)


@pytest.mark.parametrize("kind", ["py", "pt2"])
def test_artifact_state_dict_holds_the_states_and_the_learned_param(artifacts, kind):
    artifact = make(kind, artifacts)
    prefix = "program." if kind == "pt2" else ""
    assert set(artifact.state_dict()) == {f"{prefix}state_values", f"{prefix}learned.s"}
    assert learned_param(artifact).item() == 0.25


@pytest.mark.parametrize("kind", ["py", "pt2"])
def test_artifact_resumes_from_a_state_dict_taken_mid_sequence(artifacts, kind):
    through = make(kind, artifacts)
    for index in range(3):
        run(through, index)
    resumed = make(kind, artifacts)
    resumed.load_state_dict(through.state_dict())
    for index in range(3, 6):
        assert_same(run(resumed, index), run(through, index))


@pytest.mark.parametrize("kind", ["py", "pt2"])
def test_artifact_keeps_its_states_in_eval_mode_and_reset_state_restores_the_start(artifacts, kind):
    artifact = make(kind, artifacts)
    for index in range(3):
        run(artifact, index)
    kept = {k: v.clone() for k, v in artifact.state_dict().items()}
    artifact.eval()
    before = float(artifact(**batch(4)).metrics["beta_before"])
    artifact(**batch(5))
    for name, value in artifact.state_dict().items():
        assert torch.equal(value, kept[name]), name
    artifact.train()
    assert float(artifact(**batch(4)).metrics["beta_before"]) == before
    artifact.reset_state()
    assert float(artifact(**batch(0)).metrics["beta_before"]) == 1.0


def test_exported_program_writes_the_states_as_a_buffer_mutation(artifacts):
    """In the saved (training) IR the write is a `copy_` into the buffer's placeholder; in
    the functional IR `run_decompositions` gives, torch lists it among the mutated buffers."""
    program = torch.export.load(str(artifacts["pt2"]))
    assert list(program.graph_signature.parameters) == ["learned.s"]
    buffer = program.graph_signature.inputs_to_buffers
    (placeholder,) = [name for name, target in buffer.items() if target == "state_values"]
    copies = [n for n in program.graph.nodes if n.target == torch.ops.aten.copy_.default]
    assert [str(n.args[0]) for n in copies] == [placeholder]
    functional = program.run_decompositions({}).graph_signature
    assert list(functional.buffers_to_mutate.values()) == ["state_values"]
