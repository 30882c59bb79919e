"""A lossdsl spec as the loss of TRL's `SFTTrainer`.

    loss = SpecLoss(lossdsl.load("sft_nll", params={"label_smoothing": 0.1}),
                    inputs=shifted_logits_and_labels)
    trainer = SpecSFTTrainer(model=model, args=SFTConfig(...), train_dataset=data,
                             processing_class=tokenizer, spec_loss=loss)

TRL's `SFTTrainer` keeps its data preparation (tokenizing, packing, completion-only labels:
-100 where no loss is wanted) and takes its loss from the spec: `compute_loss` runs the
model and hands its outputs and the labels to `spec_loss`, as TRL asks of a custom loss
(its `compute_loss_func` argument is deprecated). The spec's terms, weights and metrics join
TRL's logs, and the trainer's global step drives the spec's schedules, as with
`lossdsl.integrations.transformers.SpecTrainer`.

TRL's `DPOTrainer` and `GRPOTrainer` take no custom loss: they choose among built-in
losses with `loss_type`. To train with the `dpo` or `grpo` specs, compute the
log-probabilities in your own loop (see `examples/char_lm.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from lossdsl.integrations.transformers import SpecLoss, SpecLossLogging

try:
    import trl
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError('lossdsl.integrations.trl needs trl: pip install "lossdsl[trl]"') from error

__all__ = ["SpecLoss", "SpecSFTTrainer"]


class SpecSFTTrainer(SpecLossLogging, trl.SFTTrainer):
    """TRL's `SFTTrainer` with its loss from a `SpecLoss`."""

    def __init__(self, *args: Any, spec_loss: SpecLoss, **kwargs: Any) -> None:
        spec_loss = self._checked_spec_loss("spec_loss", spec_loss)
        if kwargs.get("compute_loss_func") is not None:
            raise TypeError("SpecSFTTrainer takes its loss from spec_loss, not compute_loss_func")
        super().__init__(*args, **kwargs)
        self.spec_loss = spec_loss

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        self._prepare_spec_loss(model)
        model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**model_inputs, use_cache=False)
        loss = self.spec_loss(outputs, inputs.get("labels"), num_items_in_batch)
        return (loss, outputs) if return_outputs else loss
