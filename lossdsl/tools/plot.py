"""`lossdsl plot`: every param that follows `step` and every term weight, as curves over the
training steps, from the front end's own evaluation of schedules (no torch)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossdsl.ir import SpecIR
from lossdsl.passes.evaluate import depends_on_step, sample_steps, scalar_value
from lossdsl.tools import ToolError, require

FIGURE_WIDTH = 8.0  # inches
PANEL_HEIGHT = 3.0
DPI = 100


@dataclass
class Curves:
    steps: list[float]
    params: dict[str, list[float]] = field(default_factory=dict)  # schedule-valued params
    weights: dict[str, list[float]] = field(default_factory=dict)  # every term's weight


def parse_steps(text: str) -> tuple[float, float]:
    """`0:10000` -> (0, 10000)."""
    first, colon, last = text.partition(":")
    try:
        start, stop = float(first), float(last)
    except ValueError:
        start = stop = float("nan")
    if not colon or not start < stop:
        raise ToolError(
            f"--steps takes START:STOP with START < STOP, such as 0:10000, got {text!r}"
        )
    return start, stop


def steps_between(ir: SpecIR, start: float, stop: float, points: int) -> list[float]:
    """`points` evenly spaced steps, and each step where a schedule changes course (a
    piecewise boundary and the step before it, the end of a ramp) inside the range."""
    marks = {start + (stop - start) * i / (points - 1) for i in range(points)}
    nodes = [p.node for p in ir.params] + list(ir.weights.values())
    for node in nodes:
        for mark in sample_steps(ir, node):
            marks.update({mark, mark - 1})
    return sorted(m for m in marks if start <= m <= stop)


def schedule_curves(
    ir: SpecIR, start: float, stop: float, points: int = 501, params: dict[str, float] | None = None
) -> Curves:
    steps = steps_between(ir, start, stop, points)
    curves = Curves(steps)
    for param in ir.params:
        if depends_on_step(ir, param.node):
            curves.params[param.name] = _values(ir, param.node, steps, params)
    for term, node in ir.weights.items():
        curves.weights[term] = _values(ir, node, steps, params)
    return curves


def _values(
    ir: SpecIR, node: int, steps: list[float], params: dict[str, float] | None
) -> list[float]:
    values = []
    for step in steps:
        value = scalar_value(ir, node, step, params)
        values.append(float("nan") if value is None else value)
    return values


def plot_schedules(
    ir: SpecIR, start: float, stop: float, output: Path, points: int = 501
) -> tuple[Curves, Any]:
    """Draw the curves into `output` (.png, .svg or .pdf); returns them and the figure."""
    if points < 2:
        raise ToolError(f"--points must be at least 2, got {points}")
    curves = schedule_curves(ir, start, stop, points)
    figure = new_figure(2 if curves.params else 1)
    panels = [("weight of each term", curves.weights)]
    if curves.params:
        panels.insert(0, ("params that follow `step`", curves.params))
    for axes, (title, series) in zip(figure.axes, panels, strict=True):
        for name, values in series.items():
            axes.plot(curves.steps, values, label=name)
        axes.set_title(title)
        axes.set_xlabel("step")
        axes.grid(alpha=0.3)
        axes.legend(loc="best", fontsize="small")
    figure.suptitle(f"{ir.name}: schedules over steps {start:g} to {stop:g}")
    save_figure(figure, output)
    return curves, figure


def new_figure(panels: int, columns: int = 1) -> Any:
    """A matplotlib figure with `panels` axes, drawn off screen (no pyplot, no display)."""
    require("matplotlib", "plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = -(-panels // columns)
    figure = Figure(figsize=(FIGURE_WIDTH, PANEL_HEIGHT * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    for index in range(panels):
        figure.add_subplot(rows, columns, index + 1)
    return figure


def save_figure(figure: Any, output: Path) -> None:
    from lossdsl.tools.outputs import write_output

    suffix = output.suffix.lstrip(".")

    def write(target: Path) -> None:
        figure.savefig(target, format=suffix, dpi=DPI)

    write_output(output, write)
