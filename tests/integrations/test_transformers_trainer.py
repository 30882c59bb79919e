"""`transformers.Trainer` trains with a spec as its `compute_loss_func`: a tiny GPT-2 built
from a config (no download) learns a repeating sequence, its loss falls, and the spec's
terms, weights and metrics are in the trainer's logs, for training and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import lossdsl
from lossdsl.integrations.transformers import SpecLoss, SpecTrainer, shifted_logits_and_labels

VOCAB = 12


def tiny_gpt2() -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=1, n_head=2,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def cycles(count: int) -> list[dict[str, torch.Tensor]]:
    """Windows of 0 1 2 … 7 0 1 …: each token predicts the next exactly."""
    stream = torch.arange(64) % 8 + 2
    return [{"input_ids": stream[i : i + 16], "labels": stream[i : i + 16]} for i in range(count)]


def arguments(tmp_path: Path, **overrides: object) -> transformers.TrainingArguments:
    options = dict(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=20, logging_steps=5,
        learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        seed=0,
    )  # fmt: skip
    return transformers.TrainingArguments(**{**options, **overrides})


def train_logs(trainer: transformers.Trainer) -> list[dict[str, float]]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_a_tiny_gpt2_trains_with_sft_nll_and_the_spec_values_are_logged(tmp_path: Path) -> None:
    loss = SpecLoss(lossdsl.load("sft_nll"), inputs=shifted_logits_and_labels)
    trainer = SpecTrainer(
        model=tiny_gpt2(),
        args=arguments(tmp_path),
        train_dataset=cycles(32),
        compute_loss_func=loss,
    )
    trainer.train()
    logs = train_logs(trainer)
    assert len(logs) == 4
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    for entry in logs:
        assert {"terms/nll", "weights/nll", "metrics/accuracy", "metrics/num_tokens"} <= set(entry)
        assert entry["terms/nll"] == pytest.approx(entry["loss"], rel=1e-5)  # the spec's loss
        assert entry["metrics/num_tokens"] == 8 * 15  # a batch of 8 windows, 15 shifted labels
    assert logs[-1]["metrics/accuracy"] > logs[0]["metrics/accuracy"]


SCHEDULED = """
loss scheduled_nll
input logits : float[B, T, V] grad
input labels : int[B, T] in [0, V)
param ramp = linear(0, 1, steps=20)
term nll  = mean(-gather(log_softmax(logits, dim=V), labels, dim=V))
term size = mean(square(logits))
minimize nll + 0.001 * ramp * size
metric ramp_now = ramp
"""


def test_the_spec_schedules_follow_the_trainers_global_step(tmp_path: Path) -> None:
    loss = SpecLoss(lossdsl.load_text(SCHEDULED), inputs=shifted_logits_and_labels)
    trainer = SpecTrainer(
        model=tiny_gpt2(),
        args=arguments(tmp_path),
        train_dataset=cycles(32),
        compute_loss_func=loss,
    )
    trainer.train()
    # the calls of steps 0-4 are averaged into the first log, 5-9 into the second, …
    ramps = [entry["metrics/ramp_now"] for entry in train_logs(trainer)]
    assert ramps == pytest.approx([2 / 20, 7 / 20, 12 / 20, 17 / 20])
    weights = [entry["weights/size"] for entry in train_logs(trainer)]
    assert weights == pytest.approx([0.001 * r for r in ramps])


def test_gradient_accumulation_averages_the_spec_loss_over_micro_batches(tmp_path: Path) -> None:
    """The spec's loss is a per-batch mean, so Trainer must divide it by the accumulation
    steps: the logged loss (the sum of the scaled micro-batch losses) equals the term."""
    loss = SpecLoss(lossdsl.load("sft_nll"), inputs=shifted_logits_and_labels)
    args = arguments(tmp_path, per_device_train_batch_size=4, gradient_accumulation_steps=2)
    trainer = SpecTrainer(
        model=tiny_gpt2(), args=args, train_dataset=cycles(32), compute_loss_func=loss
    )
    trainer.train()
    for entry in train_logs(trainer):
        assert entry["loss"] == pytest.approx(entry["terms/nll"], rel=1e-4)


def test_evaluation_logs_carry_the_spec_values_with_the_eval_prefix(tmp_path: Path) -> None:
    loss = SpecLoss(lossdsl.load("sft_nll"), inputs=shifted_logits_and_labels)
    args = arguments(tmp_path, eval_strategy="steps", eval_steps=10, per_device_eval_batch_size=8)
    trainer = SpecTrainer(
        model=tiny_gpt2(),
        args=args,
        train_dataset=cycles(32),
        eval_dataset=cycles(16),
        compute_loss_func=loss,
    )
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [entry["step"] for entry in evals] == [10, 20]
    for entry in evals:
        assert entry["eval_terms/nll"] == pytest.approx(entry["eval_loss"], rel=1e-5)
        assert 0 <= entry["eval_metrics/accuracy"] <= 1
    assert evals[1]["eval_loss"] < evals[0]["eval_loss"]
    assert not any(k.startswith("eval_") for entry in train_logs(trainer) for k in entry)


def test_a_plain_function_as_compute_loss_func_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"SpecLoss\(lossdsl.load"):
        SpecTrainer(
            model=tiny_gpt2(),
            args=arguments(tmp_path),
            train_dataset=cycles(8),
            compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.loss,
        )


def test_missing_labels_are_reported_by_the_input_mapping() -> None:
    with pytest.raises(ValueError, match="needs `labels`"):
        shifted_logits_and_labels(object(), None)


def test_the_spec_runs_in_eval_mode_during_evaluation(tmp_path: Path) -> None:
    """A spec's states (`state`, `ema`) update in training mode only: the spec follows the
    model's mode, eval while the Trainer evaluates."""
    modes: list[bool] = []

    def inputs(outputs: object, labels: torch.Tensor | None) -> dict[str, object]:
        modes.append(loss.loss_fn.training)
        return shifted_logits_and_labels(outputs, labels)

    loss = SpecLoss(lossdsl.load("sft_nll"), inputs=inputs)
    args = arguments(
        tmp_path, max_steps=4, eval_strategy="steps", eval_steps=4, per_device_eval_batch_size=8
    )
    trainer = SpecTrainer(
        model=tiny_gpt2(),
        args=args,
        train_dataset=cycles(32),
        eval_dataset=cycles(16),
        compute_loss_func=loss,
    )
    trainer.train()
    assert modes == [True] * 4 + [False] * 2  # 4 training steps, then 16 / 8 eval batches
