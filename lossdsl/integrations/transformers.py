"""A lossdsl spec as the loss of Hugging Face's `transformers.Trainer`.

    loss = SpecLoss(lossdsl.load("sft_nll"), inputs=shifted_logits_and_labels)
    trainer = SpecTrainer(model=model, args=args, train_dataset=data, compute_loss_func=loss)
    trainer.train()   # logs loss, terms/nll, weights/nll, metrics/accuracy, metrics/num_tokens

`SpecLoss` is a `compute_loss_func`: `Trainer` calls it with the model's outputs and the
labels, `inputs` maps those to the spec's inputs, and the spec's loss is returned.
`SpecTrainer` is `Trainer` plus three things a plain function cannot do: it passes the
trainer's global step to the spec (its schedules), it adds the spec's terms, weights and
metrics (means since the last log) to every log the trainer writes, so every reporter
(console, TensorBoard, W&B, `state.log_history`) sees them, and it tells `Trainer` that the
loss is a per-batch mean, so gradient accumulation divides it by the number of steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from lossdsl.integrations.logs import RunningMeans

try:
    import transformers
except ImportError as error:  # pragma: no cover - the message is the point
    raise ImportError(
        'lossdsl.integrations.transformers needs transformers: pip install "lossdsl[hf]"'
    ) from error

SpecInputs = Callable[[Any, "torch.Tensor | None"], Mapping[str, Any]]


def shifted_logits_and_labels(outputs: Any, labels: torch.Tensor | None) -> dict[str, Any]:
    """The inputs of `sft_nll` from a causal LM: the logits at position t predict label t + 1."""
    if labels is None:
        raise ValueError("shifted_logits_and_labels needs `labels` in the batch")
    return {"logits": outputs.logits[:, :-1], "labels": labels[:, 1:]}


class SpecLoss:
    """A `compute_loss_func` that runs a lossdsl spec.

    `loss_fn` is what `lossdsl.load` returned; `inputs(outputs, labels)` gives the keyword
    inputs of the spec (its `step` comes from the trainer). Terms, weights and metrics of
    every call are kept, as running means, for the trainer's next log.
    """

    def __init__(self, loss_fn: torch.nn.Module, inputs: SpecInputs) -> None:
        self.loss_fn = loss_fn
        self.inputs = inputs
        self.step = 0
        self.training = True
        self._means = {"train": RunningMeans(), "eval": RunningMeans()}

    def __call__(
        self, outputs: Any, labels: torch.Tensor | None, num_items_in_batch: Any = None
    ) -> torch.Tensor:
        # num_items_in_batch is not used: the spec decides how its loss is averaged.
        out = self.loss_fn(**self.inputs(outputs, labels), step=self.step)
        self._means["train" if self.training else "eval"].add(out)
        return out.loss

    def pop_logs(self, training: bool, prefix: str = "") -> dict[str, float]:
        """The means of the spec's values since the last call, for one log."""
        return self._means["train" if training else "eval"].pop(prefix)


class SpecLossLogging:
    """Mixin for a `transformers.Trainer` subclass that has a `SpecLoss` in `spec_loss`."""

    spec_loss: SpecLoss
    loss_is_scaled_for_ga = False  # the spec returns a mean over its micro-batch

    @classmethod
    def _checked_spec_loss(cls, keyword: str, value: Any) -> SpecLoss:
        if not isinstance(value, SpecLoss):
            raise TypeError(
                f"{cls.__name__} expects {keyword}=SpecLoss(lossdsl.load(...), inputs=...), "
                f"got {type(value).__name__}"
            )
        return value

    def _prepare_spec_loss(self, model: torch.nn.Module) -> None:
        state = self.state  # type: ignore[attr-defined]
        self.spec_loss.step = state.global_step
        self.spec_loss.training = model.training
        self.spec_loss.loss_fn.train(model.training)  # a spec's states update in training only
        device = self.args.device  # type: ignore[attr-defined]
        if any(b.device != device for b in self.spec_loss.loss_fn.buffers()):
            self.spec_loss.loss_fn.to(device)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # As TRL's trainers do: a log written while the model is in eval mode is an
        # evaluation's, and its keys carry the `eval_` prefix.
        training = self.model.training  # type: ignore[attr-defined]
        logs.update(self.spec_loss.pop_logs(training, prefix="" if training else "eval_"))
        super().log(logs, start_time)  # type: ignore[misc]


class SpecTrainer(SpecLossLogging, transformers.Trainer):
    """`transformers.Trainer` whose `compute_loss_func` is a `SpecLoss`."""

    def __init__(self, *args: Any, compute_loss_func: SpecLoss, **kwargs: Any) -> None:
        spec_loss = self._checked_spec_loss("compute_loss_func", compute_loss_func)
        super().__init__(*args, compute_loss_func=spec_loss, **kwargs)
        self.spec_loss = spec_loss

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        self._prepare_spec_loss(model)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
