"""Robust regression with 10 % outliers: the standard `mse`, `huber` and `cauchy` specs fit
the same linear model, and the properties `lossdsl check` proved for each are printed beside
the fit.

    python examples/robust_regression.py          # 20 000 points, 400 full-batch steps
    python examples/robust_regression.py --fast   # 2 000 points, 200 steps (seconds)

The data: y = x·w + b + noise (σ = 0.1) for 90 % of the points; the other 10 % are sensor
glitches, y shifted up by 20 to 40. Squared error follows the glitches (its gradient grows
with the residual: `gradient bounded: not proven`); Huber and Cauchy cap each point's pull
(`gradient bounded: proven`), so the fit stays on the clean points. Cauchy is not convex
(`convex: not proven`): it is started from the origin, where it converges here.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

import lossdsl

TRUE_WEIGHTS = (2.0, -1.0, 0.5)
TRUE_BIAS = 1.0
LOSSES = {  # spec name -> params
    "mse": {},
    "huber": {"delta": 0.5},
    "cauchy": {"alpha": 1.0},
}
PROPERTY_COLUMNS = ("convex", "gradient_bounded", "bounds", "differentiable")


@dataclass(frozen=True)
class Fit:
    spec: str
    weights: list[float]
    bias: float
    error: float  # the largest absolute error over the weights and the bias
    properties: dict[str, str]  # of the spec's single term, as `lossdsl check` prints them


def make_data(points: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(points, len(TRUE_WEIGHTS), generator=generator)
    y = x @ torch.tensor(TRUE_WEIGHTS) + TRUE_BIAS + 0.1 * torch.randn(points, generator=generator)
    outliers = torch.rand(points, generator=generator) < 0.10
    y[outliers] += 20 + 20 * torch.rand(int(outliers.sum()), generator=generator)
    return x, y


def fit(spec: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> Fit:
    """Full-batch Adam on a linear model, from the origin."""
    loss_fn = lossdsl.load(spec, params=LOSSES[spec])
    model = torch.nn.Linear(x.shape[1], 1)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for step in range(steps):
        out = loss_fn(input=model(x).squeeze(-1), target=y, step=step)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        scheduler.step()
    weights = model.weight.detach().squeeze(0).tolist()
    bias = float(model.bias.detach())
    errors = [abs(w - t) for w, t in zip(weights, TRUE_WEIGHTS, strict=True)]
    (term,) = lossdsl.build_ir(spec).properties.values()  # what `lossdsl check` prints
    return Fit(spec, weights, bias, max([*errors, abs(bias - TRUE_BIAS)]), dict(term))


def run(points: int, steps: int) -> list[Fit]:
    x, y = make_data(points)
    return [fit(spec, x, y, steps) for spec in LOSSES]


def table(fits: list[Fit]) -> str:
    truth = ", ".join(f"{w:+.2f}" for w in TRUE_WEIGHTS)
    header = [
        "spec",
        "weights",
        "bias",
        "max error",
        *(c.replace("_", " ") for c in PROPERTY_COLUMNS),
    ]
    rows = [header, ["truth", truth, f"{TRUE_BIAS:+.2f}", "", *([""] * len(PROPERTY_COLUMNS))]]
    for f in fits:
        params = ", ".join(f"{k}={v}" for k, v in LOSSES[f.spec].items())
        rows.append(
            [
                f"{f.spec}({params})" if params else f.spec,
                ", ".join(f"{w:+.2f}" for w in f.weights),
                f"{f.bias:+.2f}",
                f"{f.error:.3f}",
                *(f.properties[c] for c in PROPERTY_COLUMNS),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def main(argv: list[str] | None = None) -> list[Fit]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="a few seconds, for the tests")
    args = parser.parse_args(argv)
    points, steps = (2_000, 200) if args.fast else (20_000, 400)
    print(f"{points} points, 10 % outliers shifted by +20 to +40; {steps} full-batch Adam steps")
    fits = run(points, steps)
    print(table(fits))
    return fits


if __name__ == "__main__":
    main()
