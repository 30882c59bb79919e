"""Several objectives and a curriculum in one spec (`examples/multitask_curriculum.loss`):
a classifier with a regression head, its weights following schedules of the training
step, and samples admitted from easy to hard.

    python examples/multitask_curriculum.py          # 1500 steps, curriculum over 1000
    python examples/multitask_curriculum.py --fast   # 300 steps, curriculum over 200

The data are made here: 6 features, 4 classes decided by a fixed linear rule, and a
regression target (a smooth function of the features). A sample's difficulty is how close
it lies to a class boundary (1 - its margin, scaled to [0, 1]). The spec's `threshold`
schedule admits the easy ones first; `value_weight` warms the regression head in; the
entropy bonus has a constant weight. Every term is reported unweighted in
`LossOutput.terms`, every weight's current value in `LossOutput.weights`: the table
printed during training is those values.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import lossdsl

SPEC = Path(__file__).with_name("multitask_curriculum.loss")
FEATURES, CLASSES = 6, 4


@dataclass(frozen=True)
class Config:
    steps: int = 1500
    curriculum_steps: int = 1000
    report_every: int = 150
    train_size: int = 8000
    seed: int = 0


FULL = Config()
FAST = Config(steps=300, curriculum_steps=200, report_every=50, train_size=2000)


@dataclass
class Report:
    step: int
    threshold: float
    admitted: float
    weights: dict[str, float]
    terms: dict[str, float]


@dataclass
class Result:
    reports: list[Report]
    test_accuracy: float
    test_rmse: float
    baseline_rmse: float  # predicting the mean target
    seconds: float


def make_data(size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    rule = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(99))
    x = torch.randn(size, FEATURES, generator=generator)
    scores = x @ rule
    top2 = scores.topk(2, dim=1).values
    margin = top2[:, 0] - top2[:, 1]
    difficulty = 1 - (margin / margin.quantile(0.95)).clamp(max=1)
    targets = torch.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2]
    return {"x": x, "labels": scores.argmax(1), "targets": targets, "difficulty": difficulty}


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(FEATURES, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh())
        self.classify = nn.Linear(64, CLASSES)
        self.regress = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(x)
        return self.classify(hidden), self.regress(hidden).squeeze(-1)


def train(config: Config, quiet: bool = False) -> Result:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    torch.set_num_threads(1)  # a tiny model: one thread is fastest and leaves the machine free
    generator = torch.Generator().manual_seed(config.seed)
    data = make_data(config.train_size, generator)
    test = make_data(2000, generator)
    model = TwoHeads()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = lossdsl.load(SPEC, params={"curriculum_steps": config.curriculum_steps})
    reports = []
    for step in range(config.steps):
        index = torch.randint(0, config.train_size, (128,), generator=generator)
        logits, values = model(data["x"][index])
        out = loss_fn(
            logits=logits,
            labels=data["labels"][index],
            values=values,
            targets=data["targets"][index],
            difficulty=data["difficulty"][index],
            step=step,
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if step % config.report_every == 0 or step == config.steps - 1:
            reports.append(
                Report(
                    step=step,
                    threshold=float(out.metrics["threshold_now"]),
                    admitted=float(out.metrics["admitted_fraction"]),
                    weights={k: float(v) for k, v in out.weights.items()},
                    terms={k: float(v) for k, v in out.terms.items()},
                )
            )
            if not quiet:
                print(report_line(reports[-1]), flush=True)
    with torch.no_grad():
        logits, values = model(test["x"])
    return Result(
        reports=reports,
        test_accuracy=float((logits.argmax(1) == test["labels"]).float().mean()),
        test_rmse=float((values - test["targets"]).square().mean().sqrt()),
        baseline_rmse=float(test["targets"].std()),
        seconds=time.perf_counter() - started,
    )


def report_line(r: Report) -> str:
    weights = "  ".join(f"{v:+.3f}" for v in r.weights.values())
    terms = "  ".join(f"{v:.3f}" for v in r.terms.values())
    return f"{r.step:5d}  {r.threshold:9.3f}  {r.admitted:8.2f}  {weights}  {terms}"


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args(argv)
    config = FAST if args.fast else FULL
    print(
        "weights: classification, regression, entropy (the sign is minimize's); "
        "terms: unweighted, the same order"
    )
    print(f"{'step':>5}  {'threshold':>9}  {'admitted':>8}  {'weights':<22}  terms")
    result = train(config)
    print(
        f"test set (every difficulty): accuracy {result.test_accuracy:.3f}, regression RMSE "
        f"{result.test_rmse:.3f} (predicting the mean: {result.baseline_rmse:.3f}); "
        f"{result.seconds:.0f} s"
    )
    return result


if __name__ == "__main__":
    main()
