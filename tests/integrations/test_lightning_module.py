"""A `SpecModule` trains under Lightning's `Trainer`: the spec's loss falls, its terms,
weights and metrics reach the logger (a CSV file here) through `self.log_dict`, and its
schedules follow the trainer's global step."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

import lossdsl
from lossdsl.integrations.lightning import SpecModule


class TwoHeads(SpecModule):
    """A classifier with a regression head, trained by the `multi_objective` example spec
    (its regression weight warms up over the first steps)."""

    def __init__(self) -> None:
        super().__init__(lossdsl.load("multi_objective"))
        self.trunk = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh())
        self.classify = torch.nn.Linear(32, 3)
        self.regress = torch.nn.Linear(32, 1)

    def spec_inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        x, labels, returns = batch
        hidden = self.trunk(x)
        return {
            "logits": self.classify(hidden),
            "labels": labels,
            "values": self.regress(hidden).squeeze(-1),
            "returns": returns,
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader(size: int, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(size, 4, generator=generator)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    returns = x[:, 2] - x[:, 3]
    return DataLoader(TensorDataset(x, labels, returns), batch_size=32)


def rows(logger: CSVLogger) -> list[dict[str, str]]:
    with open(Path(logger.log_dir) / "metrics.csv") as file:
        return list(csv.DictReader(file))


def column(table: list[dict[str, str]], name: str) -> list[float]:
    return [float(row[name]) for row in table if row.get(name)]


def test_a_spec_module_trains_and_logs_the_spec_values(tmp_path: Path) -> None:
    lightning.seed_everything(0, verbose=False)
    logger = CSVLogger(tmp_path, name="run")
    trainer = lightning.Trainer(
        max_epochs=6, logger=logger, log_every_n_steps=1, accelerator="cpu",
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(TwoHeads(), loader(256, seed=0), loader(128, seed=1))
    table = rows(logger)
    losses = column(table, "train/loss_step")
    assert len(losses) == 6 * 8
    assert sum(losses[-8:]) < 0.8 * sum(losses[:8])  # the first epoch against the last
    for name in ("terms/classification", "terms/regression", "terms/entropy", "metrics/accuracy"):
        assert column(table, f"train/{name}_step") and column(table, f"val/{name}")
    val_accuracy = column(table, "val/metrics/accuracy")
    assert val_accuracy[-1] > val_accuracy[0] + 0.1, val_accuracy


def test_the_spec_schedule_follows_the_global_step(tmp_path: Path) -> None:
    """`value_weight = 0.5 * warmup(steps=1000)`: after step s it is 0.5 * s / 1000."""
    lightning.seed_everything(0, verbose=False)
    logger = CSVLogger(tmp_path, name="run")
    trainer = lightning.Trainer(
        max_steps=16, logger=logger, log_every_n_steps=1, accelerator="cpu",
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(TwoHeads(), loader(256, seed=0))
    weights = column(rows(logger), "train/weights/regression_step")
    assert weights == pytest.approx([0.5 * step / 1000 for step in range(16)])


def test_a_module_without_spec_inputs_says_what_to_define() -> None:
    module = SpecModule(lossdsl.load("mse"))
    with pytest.raises(NotImplementedError, match="must define spec_inputs"):
        module.training_step((torch.zeros(2), torch.zeros(2)), 0)
