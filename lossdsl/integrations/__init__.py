"""Adapters that put a lossdsl spec into the trainers people already use.

One module per trainer, each importing its framework when it is imported (never from
`import lossdsl`), each only moving tensors between the trainer and the spec and handing
the spec's terms, weights and metrics to the trainer's logging; the loss itself is always
the spec's:

- `lossdsl.integrations.transformers`: `SpecLoss`, a `compute_loss_func` for
  `transformers.Trainer`, and `SpecTrainer`, which logs what the spec reports
  (`pip install "lossdsl[hf]"`).
- `lossdsl.integrations.trl`: `SpecSFTTrainer`, TRL's `SFTTrainer` with a spec as its loss
  (`pip install "lossdsl[trl]"`).
- `lossdsl.integrations.lightning`: `SpecModule`, a `LightningModule` whose training and
  validation steps run a spec and `self.log_dict` its values (`pip install "lossdsl[lightning]"`).
"""
