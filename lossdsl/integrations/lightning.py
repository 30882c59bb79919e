"""A lossdsl spec in PyTorch Lightning.

    class Classifier(SpecModule):
        def __init__(self):
            super().__init__(lossdsl.load("cross_entropy", params={"label_smoothing": 0.1}))
            self.net = torch.nn.Linear(8, 3)

        def spec_inputs(self, batch):
            x, y = batch
            return {"input": self.net(x), "target": y}

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-2)

`SpecModule.training_step` and `validation_step` call the spec with `spec_inputs(batch)`
and the trainer's global step (the spec's schedules), return its loss, and `self.log_dict`
its terms, weights and metrics as `train/terms/<name>`, `val/metrics/<name>`, … The spec is
a submodule, so it moves with the model (`.to`, devices chosen by the `Trainer`).
`log_spec_output` does the logging alone, for a `LightningModule` of your own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lossdsl.integrations.logs import loggable

try:
    import lightning
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        'lossdsl.integrations.lightning needs lightning: pip install "lossdsl[lightning]"'
    ) from error


def log_spec_output(
    module: lightning.LightningModule, out: Any, stage: str, batch_size: int, **log_options: Any
) -> None:
    """`module.log_dict` of a `LossOutput`'s loss, terms, weights and scalar metrics, keyed
    `<stage>/loss`, `<stage>/terms/<name>`, …; `log_options` go to `log_dict`."""
    values = {f"{stage}/loss": out.loss.detach(), **loggable(out, prefix=f"{stage}/")}
    module.log_dict(values, batch_size=batch_size, **log_options)


class SpecModule(lightning.LightningModule):
    """A `LightningModule` whose loss is a lossdsl spec; subclasses define `spec_inputs`."""

    def __init__(self, loss_fn: torch.nn.Module) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def spec_inputs(self, batch: Any) -> Mapping[str, Any]:
        """The spec's keyword inputs (model outputs and targets) for one batch."""
        raise NotImplementedError(f"{type(self).__name__} must define spec_inputs(batch)")

    def spec_step(self, batch: Any, stage: str) -> torch.Tensor:
        inputs = dict(self.spec_inputs(batch))
        out = self.loss_fn(**inputs, step=self.global_step)
        training = stage == "train"
        log_spec_output(
            self, out, stage, batch_size=_batch_size(inputs), on_step=training, on_epoch=True
        )
        return out.loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.spec_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self.spec_step(batch, "val")


def _batch_size(inputs: Mapping[str, Any]) -> int:
    """The leading size of the first tensor input (Lightning weighs epoch means by it)."""
    for value in inputs.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return 1
