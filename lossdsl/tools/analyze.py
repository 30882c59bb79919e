"""`lossdsl analyze`: term magnitudes and gradient flow on synthetic (or saved) inputs, before
a long run.

Per term: its value, weight, weighted value and share of the total; per `grad` input, the
gradient norm of the term (and of its weighted contribution), the mean and max of |g|, and the
fraction of exact zeros. The graph runs node by node (`graph_run`): the first IR node whose
value is NaN or ±inf is named with its spec line, and so is the node where the gradient first
turns non-finite on the way back. A warning when the weighted terms differ by more than 100×.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx

from lossdsl.ir import InputSpec, SpecIR
from lossdsl.ir.model import RangeSpec
from lossdsl.tools import ToolError
from lossdsl.tools.graph_run import FLOAT_DTYPES, Traced, bind, split_outputs, trace
from lossdsl.tools.progress import progress

DEFAULT_DIM = 8  # the size of a named dim that `--dims` does not give
IMBALANCE = 100.0  # weighted terms further apart than this are worth a warning


# ---- synthetic inputs ----------------------------------------------------------------


def parse_dims(text: str | None) -> dict[str, int]:
    """`B=8,T=64,V=1000` (and `...=4` for the leading dims of `...`)."""
    dims: dict[str, int] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, size = part.partition("=")
        if not size.strip().isdigit() or not name.strip() or int(size) < 1:
            raise ToolError(f"--dims takes NAME=SIZE pairs such as B=8,T=64, got {part.strip()!r}")
        dims[name.strip()] = int(size)
    return dims


def synthetic_inputs(ir: SpecIR, dims: dict[str, int] | None = None, seed: int = 0) -> dict:
    """A tensor for each input without a default, drawn to match its dtype, dims and declared
    range. A closed finite end of a range is taken once (the first element at the low end,
    the last at the high end), so that a `log` of a value declared to reach 0 shows up; a bool
    mask keeps its first element true. `grad` inputs require gradients."""
    dims = dict(dims or {})
    unknown = set(dims) - set(ir.dims) - {"..."}
    if unknown:
        known = ", ".join(ir.dims) or "none"
        raise ToolError(f"--dims: {ir.name} has no dim {', '.join(sorted(unknown))} ({known})")
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for spec in ir.inputs:
        if spec.default is None:
            inputs[spec.name] = _draw(spec, dims, generator)
    return inputs


def _shape(spec: InputSpec, dims: dict[str, int]) -> list[int]:
    shape: list[int] = []
    for dim in spec.dims:
        if dim == "...":
            shape.append(dims.get("...", DEFAULT_DIM))
        else:
            shape.append(dim if isinstance(dim, int) else dims.get(dim, DEFAULT_DIM))
    return shape


def _draw(spec: InputSpec, dims: dict[str, int], generator: torch.Generator) -> torch.Tensor:
    shape = _shape(spec, dims)
    lo, hi = _bounds(spec.range, dims)
    if spec.dtype == "bool":
        tensor = torch.rand(shape, generator=generator) < 0.5
        tensor.view(-1)[:1] = True
        return tensor
    if spec.dtype == "int":
        first = int(lo) if math.isfinite(lo) else 0
        last = int(hi) if math.isfinite(hi) else first + DEFAULT_DIM
        if spec.range is not None and not spec.range.hi_closed and math.isfinite(hi):
            last -= 1
        if spec.range is not None and not spec.range.lo_closed and math.isfinite(lo):
            first += 1
        return torch.randint(first, max(last, first) + 1, shape, generator=generator)
    dtype = FLOAT_DTYPES.get(spec.dtype, torch.float32)
    normal = torch.randn(shape, generator=generator, dtype=torch.float64)
    if math.isfinite(lo) and math.isfinite(hi):
        values = lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=torch.float64)
    elif math.isfinite(lo):
        values = lo + normal.abs()
    elif math.isfinite(hi):
        values = hi - normal.abs()
    else:
        values = normal
    flat = values.view(-1)
    if spec.range is not None and flat.numel() > 1:
        if spec.range.lo_closed and math.isfinite(lo):
            flat[0] = lo
        if spec.range.hi_closed and math.isfinite(hi):
            flat[-1] = hi
    return values.to(dtype).requires_grad_(spec.grad)


def _bounds(rng: RangeSpec | None, dims: dict[str, int]) -> tuple[float, float]:
    if rng is None:
        return -math.inf, math.inf

    def value(bound: float | str) -> float:
        if isinstance(bound, str):
            sign = -1.0 if bound.startswith("-") else 1.0
            return sign * dims.get(bound.lstrip("-"), DEFAULT_DIM)
        return float(bound)

    return value(rng.lo), value(rng.hi)


# ---- the report ------------------------------------------------------------------------


@dataclass
class GradientStats:
    input: str
    norm: float  # of the term's gradient with respect to this input
    weighted_norm: float  # of the weighted term's: |weight| * norm
    mean_abs: float
    max_abs: float
    zero_fraction: float


@dataclass
class TermReport:
    name: str
    value: float
    weight: float
    weighted: float
    share: float  # |weighted| over the sum of the finite |weighted| (NaN: not finite)
    gradients: list[GradientStats] = field(default_factory=list)


@dataclass
class NonFinite:
    """The first IR node that went NaN or ±inf, forward or on the way back."""

    phase: str  # "forward" | "backward"
    node: int
    op: str
    text: str  # as the user wrote it (or the spec's name for it)
    file: str
    line: int
    col: int
    nan: int
    inf: int
    elements: int
    argument: str | None = None  # backward: the argument whose gradient it made non-finite

    def describe(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        bad = ", ".join(f"{n} {kind}" for n, kind in ((self.nan, "NaN"), (self.inf, "±inf")) if n)
        if self.phase == "forward":
            return f"forward: `{self.text}` ({self.op}) at {where} gives {bad} of {self.elements}"
        into = f" the gradient of `{self.argument}`" if self.argument else " a gradient"
        return (
            f"backward: `{self.text}` ({self.op}) at {where} turns{into} non-finite "
            f"({bad} of {self.elements})"
        )


@dataclass
class Analysis:
    spec: str
    file: str
    step: float
    seed: int | None
    shapes: dict[str, list[int]]
    loss: float
    terms: list[TermReport]
    loss_gradients: list[GradientStats]
    metrics: dict[str, Any]
    non_finite: list[NonFinite]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: a non-finite number is the string "inf", "-inf" or "nan"."""
        return _json_safe(asdict(self))

    def render(self) -> str:
        source = "synthetic inputs" if self.seed is not None else "saved inputs"
        seed = f", seed {self.seed}" if self.seed is not None else ""
        shapes = ", ".join(f"{k}{list(v)}" for k, v in self.shapes.items())
        lines = [f"{self.spec} at step {self.step:g}{seed}, {source}: {shapes}", ""]
        lines.append(f"loss {_number(self.loss)}")
        rows = [["term", "value", "weight", "weighted", "share"]]
        rows += [
            [t.name, _number(t.value), _number(t.weight), _number(t.weighted), _percent(t.share)]
            for t in self.terms
        ]
        lines += ["", *_table(rows)]
        rows = [["gradient of", "input", "norm", "weighted norm", "mean |g|", "max |g|", "zeros"]]
        for name, stats in [(t.name, t.gradients) for t in self.terms] + [
            ("loss", self.loss_gradients)
        ]:
            for g in stats:
                rows.append(
                    [
                        name,
                        g.input,
                        _number(g.norm),
                        _number(g.weighted_norm),
                        _number(g.mean_abs),
                        _number(g.max_abs),
                        f"{g.zero_fraction:.1%}",
                    ]
                )
        if len(rows) > 1:
            lines += ["", *_table(rows)]
        if self.non_finite:
            lines += ["", *[f"non-finite: {n.describe()}" for n in self.non_finite]]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def _percent(share: float) -> str:
    return f"{share:.1%}" if math.isfinite(share) else "-"


def _number(value: float) -> str:
    return f"{value:.4g}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


# ---- running it --------------------------------------------------------------------------


def analyze(
    ir: SpecIR,
    inputs: dict[str, torch.Tensor] | None = None,
    dims: dict[str, int] | None = None,
    seed: int = 0,
    step: float = 0,
    params: dict[str, float] | None = None,
) -> Analysis:
    """Run the spec once on `inputs` (synthetic ones drawn with `seed` when None)."""
    synthetic = inputs is None
    with progress(f"analyzing {ir.name}", total=3) as advance:
        if inputs is None:
            inputs = synthetic_inputs(ir, dims, seed)
        _check_inputs(ir, inputs)
        inputs = {k: v.detach().requires_grad_(_is_grad(ir, k)) for k, v in inputs.items()}
        traced = trace(ir)
        advance()
        watch = _Watch(traced)
        outputs = split_outputs(ir, watch.run(*bind(ir, inputs, step, params or {})))
        advance()
        grad_inputs = {s.name: inputs[s.name] for s in ir.inputs if s.grad and s.name in inputs}
        report = _report(ir, inputs, outputs, grad_inputs, watch, step, seed if synthetic else None)
        advance()
    return report


def _is_grad(ir: SpecIR, name: str) -> bool:
    spec = next((s for s in ir.inputs if s.name == name), None)
    return spec is not None and spec.grad


def _check_inputs(ir: SpecIR, inputs: dict[str, torch.Tensor]) -> None:
    """The checks `lossdsl.load` makes (names, dtypes, dims), through a loaded module."""
    from lossdsl.backend.module import LossModule

    module = LossModule(ir, lambda choices: ir)
    with torch.no_grad():
        module(**inputs)  # raises lossdsl.InputError, which says what is wrong


def _report(
    ir: SpecIR,
    inputs: dict[str, torch.Tensor],
    outputs: dict[str, Any],
    grad_inputs: dict[str, torch.Tensor],
    watch: _Watch,
    step: float,
    seed: int | None,
) -> Analysis:
    loss = outputs["loss"]
    non_finite = [watch.forward] if watch.forward is not None else []
    loss_gradients: list[GradientStats] = []
    if grad_inputs and loss.requires_grad:
        watch.recording = True
        gradients = torch.autograd.grad(
            loss, list(grad_inputs.values()), retain_graph=True, allow_unused=True
        )
        watch.recording = False
        loss_gradients = _stats(grad_inputs, gradients, 1.0)
        if watch.backward is not None:
            non_finite.append(watch.backward)
    weighted = {
        name: float(outputs["weights"][name].detach()) * float(term.detach())
        for name, term in outputs["terms"].items()
    }
    total = sum(abs(v) for v in weighted.values() if math.isfinite(v))
    terms = []
    for name, term in outputs["terms"].items():
        weight = float(outputs["weights"][name].detach())
        report = TermReport(
            name,
            float(term.detach()),
            weight,
            weighted[name],
            _share(weighted[name], total),
        )
        if grad_inputs and term.requires_grad:
            gradients = torch.autograd.grad(
                term, list(grad_inputs.values()), retain_graph=True, allow_unused=True
            )
            report.gradients = _stats(grad_inputs, gradients, abs(weight))
        terms.append(report)
    metrics = {
        name: float(value.detach()) if value.numel() == 1 else list(value.shape)
        for name, value in outputs["metrics"].items()
    }
    return Analysis(
        spec=ir.name,
        file=ir.file,
        step=float(step),
        seed=seed,
        shapes={name: list(t.shape) for name, t in inputs.items()},
        loss=float(loss.detach()),
        terms=terms,
        loss_gradients=loss_gradients,
        metrics=metrics,
        non_finite=non_finite,
        warnings=_warnings(terms),
    )


def _share(weighted: float, total: float) -> float:
    """|weighted| over the sum of the finite |weighted|; NaN for a non-finite term."""
    if not math.isfinite(weighted):
        return math.nan
    return abs(weighted) / total if total > 0 else 0.0


def _stats(
    grad_inputs: dict[str, torch.Tensor], gradients: tuple[Any, ...], weight: float
) -> list[GradientStats]:
    found = []
    for (name, tensor), gradient in zip(grad_inputs.items(), gradients, strict=True):
        g = torch.zeros_like(tensor) if gradient is None else gradient.detach()
        g = g.double()
        norm = float(torch.linalg.vector_norm(g))
        found.append(
            GradientStats(
                name,
                norm,
                weight * norm,
                float(g.abs().mean()) if g.numel() else 0.0,
                float(g.abs().max()) if g.numel() else 0.0,
                float((g == 0).double().mean()) if g.numel() else 1.0,
            )
        )
    return found


def _warnings(terms: list[TermReport]) -> list[str]:
    found = []
    sized = [t for t in terms if t.weighted != 0 and math.isfinite(t.weighted)]
    if len(sized) > 1:
        largest = max(sized, key=lambda t: abs(t.weighted))
        smallest = min(sized, key=lambda t: abs(t.weighted))
        ratio = abs(largest.weighted) / abs(smallest.weighted)
        if ratio > IMBALANCE:
            found.append(
                f"weighted terms differ by {ratio:.3g}x: `{largest.name}` is "
                f"{_number(largest.weighted)}, `{smallest.name}` is {_number(smallest.weighted)}; "
                f"rescale `{smallest.name}`'s weight or the term itself"
            )
    for t in terms:
        if t.gradients and all(g.norm == 0 for g in t.gradients) and t.weight != 0:
            found.append(f"term `{t.name}` sends no gradient to any `grad` input here")
    return found


class _Watch(fx.Interpreter):
    """Runs the graph node by node: the first IR node with a non-finite value, and, while
    `recording`, the first autograd step whose output gradients are finite but whose input
    gradients are not, credited to the IR node whose lowering made that step."""

    def __init__(self, traced: Traced):
        super().__init__(traced.graph)
        self.traced = traced
        self.forward: NonFinite | None = None
        self.recording = False
        self.backward: NonFinite | None = None
        self.owner = self.owners()

    def owners(self) -> dict[fx.Node, fx.Node]:
        """Each fx node's IR owner: itself when it computes an IR node, else the next one
        that does (a composite lowering emits its helpers just before its result)."""
        owner: dict[fx.Node, fx.Node] = {}
        pending: list[fx.Node] = []
        for n in self.traced.graph.graph.nodes:
            pending.append(n)
            if n in self.traced.ir_nodes:
                for waiting in pending:
                    owner[waiting] = n
                pending = []
        return owner

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if not isinstance(result, torch.Tensor):
            return result
        if n in self.traced.ir_nodes and result.is_floating_point() and self.forward is None:
            self.forward = self.non_finite("forward", n, result)
        if result.grad_fn is not None and n in self.owner:
            result.grad_fn.register_hook(self.hook(n))
        return result

    def hook(self, n: fx.Node) -> Any:
        def record(grad_inputs: tuple[Any, ...], grad_outputs: tuple[Any, ...]) -> None:
            if not self.recording or self.backward is not None:
                return
            if not all(_finite(g) for g in grad_outputs):
                return
            bad = [i for i, g in enumerate(grad_inputs) if not _finite(g)]
            if bad:
                gradient = grad_inputs[bad[0]]
                self.backward = self.non_finite("backward", self.owner[n], gradient)
                if self.backward is not None:
                    self.backward.argument = self.argument(n, bad[0], len(grad_inputs))

        return record

    def argument(self, n: fx.Node, index: int, count: int) -> str | None:
        """The argument whose gradient went bad, when the step's inputs are the node's."""
        tensors = [a for a in n.args if isinstance(a, fx.Node)]
        if len(tensors) != count or tensors[index] not in self.owner:
            return None
        return self.text(self.owner[tensors[index]])

    def non_finite(self, phase: str, n: fx.Node, value: torch.Tensor) -> NonFinite | None:
        with torch.no_grad():
            nan = int(torch.isnan(value).sum())
            inf = int(torch.isinf(value).sum())
        if not nan and not inf:
            return None
        node_id = self.traced.ir_nodes[n][0]
        node = self.traced.ir.node(node_id)
        span = node.origin.span if node.origin is not None else node.span
        return NonFinite(
            phase,
            node_id,
            node.op,
            self.text(n),
            span.file,
            span.line,
            span.col,
            nan,
            inf,
            value.numel(),
        )

    def text(self, n: fx.Node) -> str:
        """An IR node as the user knows it: the spec's name for it, else its source text."""
        ir = self.traced.ir
        ids = self.traced.ir_nodes[n]
        named = next((ir.node(i).name for i in ids if ir.node(i).name), None)
        if named:
            return named
        node = ir.node(ids[0])
        span = node.origin.span if node.origin is not None else node.span
        lines = ir.sources.get(span.file, "").split("\n")
        if span.line == span.end_line and 1 <= span.line <= len(lines):
            return lines[span.line - 1][span.col - 1 : span.end_col - 1]
        return node.op


def _finite(gradient: Any) -> bool:
    return gradient is None or bool(torch.isfinite(gradient).all())


def load_inputs(path: Path) -> dict[str, torch.Tensor]:
    """A saved batch: a `torch.save`d dict of tensors by input name."""
    try:
        batch = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as error:
        raise ToolError(f"cannot read the inputs in {path}: {error}") from None
    if not isinstance(batch, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in batch.items()
    ):
        raise ToolError(f"{path} must hold a dict of tensors by input name (torch.save)")
    return batch
