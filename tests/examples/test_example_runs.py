"""Each example in examples/ runs in its fast mode (the command with `--fast`) and shows
what it is there to show: the policy learns CartPole, the reward rises under GRPO and DPO,
the robust specs recover the true line where mse does not, the curriculum and the weight
schedules move with the step, the data-parallel examples take the whole batch's step."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_ppo_learns_cartpole_in_the_fast_mode(capsys: pytest.CaptureFixture[str]) -> None:
    ppo = example("ppo_cartpole")
    result = ppo.main(["--fast"])
    assert result.first_returns < 40  # a near-uniform policy drops the pole quickly
    assert result.eval_return > 200 and result.last_returns > 3 * result.first_returns
    # the spec's entropy weight, linear(0.01, 0.0, steps=10000), at the last optimizer step
    assert result.ent_coef_last == pytest.approx(0.01 * (1 - (result.updates - 1) / 10_000))
    assert "evaluation: mean return" in capsys.readouterr().out


def test_grpo_and_dpo_raise_the_reward_of_the_sft_model(capsys: pytest.CaptureFixture[str]) -> None:
    char_lm = example("char_lm")
    result = char_lm.main(["--fast"])
    assert result.sft.history[-1] < 0.3 * result.sft.history[0]
    for stage in (result.grpo, result.dpo):
        assert stage.history[0] == pytest.approx(result.grpo.history[0])  # the same SFT start
        assert stage.history[-1] > stage.history[0] + 0.1, stage
    assert set(result.samples) == {"sft", "grpo", "dpo"}
    out = capsys.readouterr().out
    assert "grpo reward:" in out and "dpo reward:" in out


def test_robust_specs_recover_the_line_and_mse_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    robust = example("robust_regression")
    fits = {fit.spec: fit for fit in robust.main(["--fast"])}
    assert fits["mse"].error > 1.0
    assert fits["huber"].error < 0.1 and fits["cauchy"].error < 0.1
    # what `lossdsl check` proved, printed beside each fit
    assert fits["mse"].properties["gradient_bounded"] == "not proven"
    assert fits["huber"].properties["gradient_bounded"] == "proven"
    assert fits["cauchy"].properties["gradient_bounded"] == "proven"
    assert fits["cauchy"].properties["convex"] == "not proven"
    table = capsys.readouterr().out
    assert "gradient bounded" in table and "huber(delta=0.5)" in table


def test_the_curriculum_and_the_weight_schedules_move_with_the_step() -> None:
    curriculum = example("multitask_curriculum")
    result = curriculum.main(["--fast"])
    config = curriculum.FAST
    first, last = result.reports[0], result.reports[-1]
    assert first.threshold == pytest.approx(0.3) and last.threshold == pytest.approx(1.0)
    assert first.admitted < 0.5 and last.admitted == 1.0
    assert first.weights["regression"] == 0.0
    assert last.weights["regression"] == pytest.approx(0.5 * (config.steps - 1) / 300)
    assert all(r.weights["entropy"] == pytest.approx(-0.01) for r in result.reports)
    assert result.test_accuracy > 0.85 and result.test_rmse < 0.7 * result.baseline_rmse


def run_script(name: str) -> str:
    """The output of `python examples/NAME.py --fast` (the data-parallel examples spawn their
    own ranks, so they run in a process of their own)."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--fast"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def first_step_difference(out: str) -> float:
    found = re.search(r"step 0: largest difference to the whole batch's gradient (\S+)", out)
    assert found is not None, out
    return float(found.group(1))


def test_ddp_sft_takes_the_whole_batch_step_and_learns() -> None:
    out = run_script("ddp_sft")
    assert first_step_difference(out) < 1e-6
    losses = [float(v) for v in re.findall(r"loss (\S+)", out)]
    assert losses[-1] < 0.2 * losses[0]


def test_ddp_grpo_takes_the_whole_batch_step_and_raises_the_reward() -> None:
    out = run_script("ddp_grpo")
    assert first_step_difference(out) < 1e-6
    rewards = [float(v) for v in re.findall(r"mean reward (\S+)", out)]
    assert rewards[-1] > rewards[0] + 0.2
