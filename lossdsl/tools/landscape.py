"""`lossdsl landscape`: the loss around the inputs of the `grad` tensors, along random,
filter-normalised directions (Li et al. 2018, "Visualizing the Loss Landscape of Neural
Nets", Sec. 4), in 1-D (total and each weighted term) and 2-D (the total).

A direction `d` is drawn from N(0, 1) for every `grad` input and rescaled filter by filter to
the norm of the input there: a filter is one row along the last dim (the class or feature
dim), or the whole tensor when it has at most one dim. The loss is evaluated at
`x + a·d1 (+ b·d2)`, each value clamped into the input's declared range, for `a`, `b` in
[-span, span]; the module is the one `lossdsl.load` builds, run without gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lossdsl.ir import SpecIR
from lossdsl.tools import ToolError
from lossdsl.tools.analyze import _bounds, synthetic_inputs
from lossdsl.tools.plot import new_figure, save_figure
from lossdsl.tools.progress import progress


@dataclass
class Landscape:
    alphas: list[float]  # the 1-D positions
    total: list[float]  # the loss along d1
    terms: dict[str, list[float]]  # each weighted term along d1
    grid: list[float] = field(default_factory=list)  # the 2-D positions, on both axes
    surface: list[list[float]] = field(default_factory=list)  # surface[i][j]: a=grid[j], b=grid[i]
    directions: list[dict[str, torch.Tensor]] = field(default_factory=list)


def filter_normalised(
    inputs: dict[str, torch.Tensor], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """A random direction for each tensor, each filter scaled to that filter's norm."""
    found = {}
    for name, x in inputs.items():
        x = x.detach().double()
        d = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        if x.dim() <= 1:
            d = d * (x.norm() / d.norm().clamp_min(1e-30))
        else:
            rows = x.norm(dim=-1, keepdim=True)
            d = d * (rows / d.norm(dim=-1, keepdim=True).clamp_min(1e-30))
        found[name] = d
    return found


def landscape(
    ir: SpecIR,
    inputs: dict[str, torch.Tensor] | None = None,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    step: float = 0,
    span: float = 1.0,
    points: int = 21,
    grid: int = 11,
) -> Landscape:
    from lossdsl.backend.module import LossModule

    if points < 2 or grid < 0 or grid == 1 or not span > 0:
        raise ToolError("--points must be at least 2, --grid 0 or at least 2, --span positive")
    inputs = dict(inputs) if inputs is not None else synthetic_inputs(ir, dims, seed)
    moved = [s for s in ir.inputs if s.grad and s.name in inputs]
    if not moved:
        raise ToolError(f"{ir.name} has no `grad` input to move along")
    base = {s.name: inputs[s.name].detach() for s in moved}
    generator = torch.Generator().manual_seed(seed + 1)
    d1 = filter_normalised(base, generator)
    d2 = filter_normalised(base, generator)
    module = LossModule(ir, lambda choices: ir)
    limits = {s.name: _bounds(s.range, dims or {}) for s in moved}

    def evaluate(a: float, b: float) -> tuple[float, dict[str, float]]:
        batch = dict(inputs)
        for name, x in base.items():
            lo, hi = limits[name]
            shifted = x.double() + a * d1[name] + b * d2[name]
            batch[name] = shifted.clamp(lo, hi).to(x.dtype)
        with torch.no_grad():
            out = module(**batch, step=step)
        weighted = {t: float(out.weights[t] * out.terms[t]) for t in out.terms}
        return float(out.loss), weighted

    alphas = [span * (2 * i / (points - 1) - 1) for i in range(points)]
    axis = [span * (2 * i / (grid - 1) - 1) for i in range(grid)] if grid else []
    result = Landscape(alphas, [], {t.name: [] for t in ir.terms}, axis, [], [d1, d2])
    with progress(f"landscape of {ir.name}", total=points + grid * grid) as advance:
        for a in alphas:
            total, terms = evaluate(a, 0.0)
            result.total.append(total)
            for name, value in terms.items():
                result.terms[name].append(value)
            advance()
        for b in axis:
            row = []
            for a in axis:
                row.append(evaluate(a, b)[0])
                advance()
            result.surface.append(row)
    return result


def plot_landscape(ir: SpecIR, found: Landscape, output: Path) -> Any:
    """The 1-D curves beside the 2-D contour of the total, into `output`."""
    figure = new_figure(2 if found.grid else 1, columns=2 if found.grid else 1)
    curves = figure.axes[0]
    curves.plot(found.alphas, _finite(found.total), label="total", linewidth=2.5, color="black")
    for name, values in found.terms.items():
        curves.plot(found.alphas, _finite(values), label=f"{name} (weighted)")
    curves.set_xlabel("a (direction 1)")
    curves.set_title("loss along one direction")
    curves.grid(alpha=0.3)
    curves.legend(loc="best", fontsize="small")
    if found.grid:
        surface = figure.axes[1]
        filled = surface.contourf(
            found.grid, found.grid, [_finite(row) for row in found.surface], levels=20
        )
        figure.colorbar(filled, ax=surface)
        surface.plot([0], [0], marker="+", color="white")
        surface.set_xlabel("a (direction 1)")
        surface.set_ylabel("b (direction 2)")
        surface.set_title("total loss")
    figure.suptitle(f"{ir.name}: filter-normalised random directions around the inputs")
    save_figure(figure, output)
    return figure


def _finite(values: list[float]) -> list[float]:
    return [v if math.isfinite(v) else float("nan") for v in values]
