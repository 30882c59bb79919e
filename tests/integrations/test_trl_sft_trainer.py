"""TRL's `SFTTrainer` with its loss from a spec: TRL prepares the data (tokenizing, labels),
the spec computes the loss, and its values join TRL's logs. The model is a tiny GPT-2 and
the tokenizer a character-level one, both built here (no download)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import transformers
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from trl import SFTConfig

import lossdsl
from lossdsl.integrations.transformers import shifted_logits_and_labels
from lossdsl.integrations.trl import SpecLoss, SpecSFTTrainer

CHARS = "abcdefgh ."


def char_tokenizer() -> transformers.PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, **{c: i + 2 for i, c in enumerate(CHARS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")  # one char a token
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>"
    )


def tiny_gpt2() -> transformers.GPT2LMHeadModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=len(CHARS) + 2, n_positions=64, n_embd=32, n_layer=1, n_head=2,
        bos_token_id=1, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def sft_config(tmp_path: Path) -> SFTConfig:
    return SFTConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=20, logging_steps=5,
        learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        max_length=32, seed=0,
    )  # fmt: skip


def test_sft_trainer_trains_with_a_spec_loss_and_logs_its_values(tmp_path: Path) -> None:
    texts = Dataset.from_dict({"text": ["abcdefgh. " * 2 for _ in range(32)]})
    loss = SpecLoss(
        lossdsl.load("sft_nll", params={"label_smoothing": 0.05}), inputs=shifted_logits_and_labels
    )
    with warnings.catch_warnings():
        # not through TRL's deprecated `compute_loss_func` (its warning would raise here)
        warnings.filterwarnings("error", message=".*compute_loss_func", category=FutureWarning)
        trainer = SpecSFTTrainer(
            model=tiny_gpt2(),
            args=sft_config(tmp_path),
            train_dataset=texts,
            processing_class=char_tokenizer(),
            spec_loss=loss,
        )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    for entry in logs:
        assert entry["terms/nll"] == pytest.approx(entry["loss"], rel=1e-5)
        assert {"weights/nll", "metrics/accuracy", "metrics/num_tokens"} <= set(entry)
    assert logs[-1]["metrics/accuracy"] > 0.9


def test_sft_trainer_refuses_a_loss_passed_the_deprecated_way(tmp_path: Path) -> None:
    loss = SpecLoss(lossdsl.load("sft_nll"), inputs=shifted_logits_and_labels)
    with pytest.raises(TypeError, match="spec_loss, not compute_loss_func"):
        SpecSFTTrainer(
            model=tiny_gpt2(),
            args=sft_config(tmp_path),
            train_dataset=Dataset.from_dict({"text": ["abc"]}),
            processing_class=char_tokenizer(),
            spec_loss=loss,
            compute_loss_func=loss,
        )
