"""Soundness of the per-term properties by sampling (issue 3, "Checked by").

For every standard-library term (every static choice, default params and a few overrides
within their ranges) and every spec of the hazard corpus, random and extreme inputs within
the declared ranges, evaluated in float64:

- never give a term value outside its reported `bounds` (beyond 1e-9 relative; open ends
  are read as closed, since rounding reaches them: softplus(-1e6) is 0.0);
- a term reported `convex: proven` passes midpoint-convexity checks along random lines in
  its `grad` inputs, with detached values frozen where the line's reference point puts
  them and the other inputs fixed, as the Properties table defines convexity;
- a term reported `gradient_bounded: proven` has a gradient norm at residual scale 1e6
  that is not much larger than at scales up to 1e2.

Plus the known answers of the issue, and the front end's speed on the whole library.
Everything is seeded.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.fx as fx

import lossdsl
from lossdsl.analysis.intervals import Interval
from lossdsl.ir import SpecIR
from lossdsl.ir.model import InputSpec, RangeSpec
from lossdsl.passes import check_reference, check_text
from tests.support import static_choice_sets

ROOT = Path(__file__).resolve().parents[2]
STDLIB = sorted(p.stem for p in ROOT.glob("specs/**/*.loss"))
CORPUS = sorted((ROOT / "tests" / "fixtures" / "hazards").glob("*.loss"))
NAN_HAZARDS = {"W300", "W301", "W303"}  # what may make a value NaN at run time
# Bounds are of the real-valued function: an unbounded argument gives an open infinite end
# (`exp` of `(-inf, inf)` is `(0, inf)`), though float64 overflows far out. Where W301
# warns of that overflow, an infinite value at an open infinite end is the overflow.
OVERFLOW = "W301"

REL = 1e-9  # the rounding allowed on a bound, relative
BOUND_SAMPLES = 24  # input draws per (spec, choices, params)
CONVEX_LINES = 6  # lines per convex term
GRADIENT_DIRECTIONS = 3  # directions per gradient-bounded term
SCALES = (1.0, 10.0, 100.0, 1e4)  # the first freezes detached values
FAR = 1e6
GROWTH = 10.0  # how much larger the gradient may get at 1e6 than at any smaller scale
EXTREMES = (0.0, 1e-8, 1e-3, 0.5, 1.0, 3.0, 1e2, 1e4, 1e6)


def seed_of(*parts: Any) -> int:
    return zlib.crc32(repr(parts).encode())


# ---- cases ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One spec to sample: a stdlib name or a corpus path, its choices and param overrides."""

    ref: str
    choices: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, float], ...] = ()

    def __str__(self) -> str:
        parts = [Path(self.ref).stem]
        parts += [v for _, v in self.choices]
        parts += [f"{k}={v:g}" for k, v in self.params]
        return "-".join(parts)


def choice_sets(ir: SpecIR) -> list[tuple[tuple[str, str], ...]]:
    return static_choice_sets(ir.choices)


def in_range(rng: RangeSpec | None, value: float) -> bool:
    return rng is None or rng.contains(value)


def param_overrides(ir: SpecIR, count: int) -> list[tuple[tuple[str, float], ...]]:
    """A few sets of numeric param values inside their declared ranges."""
    rng = np.random.default_rng(seed_of(ir.name, "params"))
    numeric = [p for p in ir.params if p.default is not None and p.range is not None]
    if not numeric:
        return []
    sets = []
    for _ in range(count):
        chosen = []
        for p in numeric:
            assert p.range is not None
            lo = p.range.lo if not isinstance(p.range.lo, str) else -math.inf
            hi = p.range.hi if not isinstance(p.range.hi, str) else math.inf
            candidates = [lo, hi, 0.0, 0.01, 0.1, 0.5, 0.9, 1.0, 2.0, 10.0, 1e3]
            if math.isfinite(lo) and math.isfinite(hi):
                candidates += [lo + (hi - lo) * f for f in (0.001, 0.25, 0.5, 0.75, 0.999)]
            inside = [c for c in candidates if math.isfinite(c) and p.range.contains(c)]
            if inside:
                chosen.append((p.name, float(rng.choice(inside))))
        sets.append(tuple(chosen))
    return sets


def stdlib_cases() -> list[Case]:
    cases = []
    for name in STDLIB:
        ir = check_reference(name).raise_for_errors()
        if not ir.terms:
            continue
        for choices in choice_sets(ir):
            cases.append(Case(name, choices))
        for params in param_overrides(ir, 2):
            cases.append(Case(name, params=params))
    return cases


def corpus_cases() -> list[Case]:
    return [Case(str(path)) for path in CORPUS]


STDLIB_CASES = stdlib_cases()
CORPUS_CASES = corpus_cases()
ALL_CASES = STDLIB_CASES + CORPUS_CASES


_MODULES: dict[Case, Any] = {}


def module_of(case: Case) -> Any:
    if case not in _MODULES:
        params: dict[str, Any] = dict(case.choices)
        params.update(dict(case.params))
        _MODULES[case] = lossdsl.load(case.ref, params=params)
    return _MODULES[case]


_CHECKED: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}


def checked_of(case: Case) -> Any:
    """The front end's result for the case's spec and choices (params do not change it:
    properties hold over the params' declared ranges)."""
    key = (case.ref, case.choices)
    if key not in _CHECKED:
        if case.ref.endswith(".loss"):
            path = Path(case.ref)
            _CHECKED[key] = check_text(path.read_text(), str(path), path.parent, dict(case.choices))
        else:
            _CHECKED[key] = check_reference(case.ref, dict(case.choices))
    return _CHECKED[key]


def diagnostic_codes(case: Case) -> set[str]:
    return {d.code for d in checked_of(case).diagnostics}


# ---- inputs --------------------------------------------------------------------------------

TORCH_DTYPES = {
    "float": torch.float64,
    "f64": torch.float64,
    "f32": torch.float32,
    "bf16": torch.bfloat16,
    "f16": torch.float16,
}


def ends(rng: RangeSpec | None, sizes: dict[str, int]) -> tuple[float, float]:
    if rng is None:
        return -math.inf, math.inf

    def value(v: float | str, default: float) -> float:
        if isinstance(v, str):
            if v.lstrip("-") == "inf":
                return -math.inf if v.startswith("-") else math.inf
            return float(sizes.get(v, default))
        return float(v)

    return value(rng.lo, -math.inf), value(rng.hi, math.inf)


def float_values(
    n: int, rng_spec: RangeSpec | None, rng: np.random.Generator, extreme: float, scale: float
) -> np.ndarray:
    """n values inside the declared range: random at `scale`, a share `extreme` of them
    taken from ±{0, 1e-8, …, 1e6} and the range's own ends."""
    lo, hi = ends(rng_spec, {})
    if math.isfinite(lo) and math.isfinite(hi):
        random = rng.uniform(lo, hi, n)
    elif math.isfinite(lo):
        random = lo + rng.exponential(scale, n)
    elif math.isfinite(hi):
        random = hi - rng.exponential(scale, n)
    else:
        random = rng.normal(0.0, scale, n)
    picks = [s * e for e in EXTREMES for s in (1.0, -1.0)]
    picks += [lo, hi]
    for end in (lo, hi):
        if math.isfinite(end):
            picks += [end + d for d in (1e-12 * (1 + abs(end)), 1e-6, 0.5)]
            picks += [end - d for d in (1e-12 * (1 + abs(end)), 1e-6, 0.5)]
    allowed = [p for p in picks if math.isfinite(p) and in_range(rng_spec, p)]
    values = random.copy()
    if allowed:
        chosen = rng.random(n) < extreme
        values[chosen] = rng.choice(allowed, int(chosen.sum()))
    bad = np.array([not in_range(rng_spec, float(v)) for v in values], dtype=bool)
    if bad.any():  # rounding at an open end: fall back to an allowed value
        assert allowed, f"cannot sample inside {rng_spec}"
        values[bad] = allowed[0]
    return values


@dataclass
class Draw:
    inputs: dict[str, torch.Tensor]
    step: float


def bind_sizes(ir: SpecIR, rng: np.random.Generator) -> tuple[dict[str, int], tuple[int, ...]]:
    sizes = {d: int(rng.integers(2, 6)) for d in ir.dims}
    leading = tuple(int(rng.integers(1, 4)) for _ in range(int(rng.integers(1, 3))))
    return sizes, leading


def shape_of(spec: InputSpec, sizes: dict[str, int], leading: tuple[int, ...]) -> tuple[int, ...]:
    shape: list[int] = []
    for dim in spec.dims:
        if dim == "...":
            shape.extend(leading)
        elif isinstance(dim, int):
            shape.append(dim)
        else:
            shape.append(sizes[str(dim)])
    return tuple(shape)


def int_values(
    spec: InputSpec,
    n: int,
    sizes: dict[str, int],
    leading: tuple[int, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    """Class indices: inside the declared range where one is given, else below every dim's
    size; negative values a range admits (or -100, torch's ignore_index, when none is
    declared) are drawn as whole values, as an ignore index would be."""
    smallest = min(sizes.values(), default=2)
    lo, hi = ends(spec.range, sizes)
    top = int(min(hi, smallest) if math.isfinite(hi) else smallest)
    low = int(max(lo, 0)) if math.isfinite(lo) else 0
    values = rng.integers(low, max(top, low + 1), n)
    ignore = [v for v in (lo, -100.0) if math.isfinite(v) and v < 0 and in_range(spec.range, v)]
    if ignore and rng.random() < 0.7:
        values[rng.random(n) < 0.3] = int(ignore[0])
    return values


def draw_inputs(
    ir: SpecIR, rng: np.random.Generator, extreme: float, scale: float, masks: str = "random"
) -> Draw:
    sizes, leading = bind_sizes(ir, rng)
    inputs: dict[str, torch.Tensor] = {}
    for spec in ir.inputs:
        if spec.default is not None and rng.random() < 0.25:
            continue  # leave an optional input to its default
        shape = shape_of(spec, sizes, leading)
        n = int(np.prod(shape)) if shape else 1
        if spec.dtype == "bool":
            kind = masks if masks != "random" else rng.choice(["none", "half", "all", "rand"])
            p = {"none": 0.0, "half": 0.5, "all": 1.0, "rand": rng.random()}[str(kind)]
            values = torch.from_numpy(rng.random(n) < p)
        elif spec.dtype == "int":
            values = torch.from_numpy(int_values(spec, n, sizes, leading, rng))
        else:
            floats = float_values(n, spec.range, rng, extreme, scale)
            values = torch.from_numpy(floats).to(TORCH_DTYPES[spec.dtype])
            if spec.dtype not in ("float", "f64"):  # rounding may leave an open range
                back = values.double().numpy()
                bad = [i for i, v in enumerate(back) if not in_range(spec.range, float(v))]
                if bad:
                    ok = next(v for v in back if in_range(spec.range, float(v)))
                    back[bad] = ok
                    values = torch.from_numpy(back).to(TORCH_DTYPES[spec.dtype])
        inputs[spec.name] = values.reshape(shape)
    step = float(rng.choice([0.0, 1.0, 500.0, 1e4, 1e6]))
    return Draw(inputs, step)


# ---- evaluation with detached values frozen -------------------------------------------------


class FrozenDetach(fx.Interpreter):
    """Runs the lowered graph; the first run records every `detach`, later runs reuse the
    recorded values: the function the optimizer sees at the first run's point."""

    def __init__(self, graph: fx.GraphModule, frozen: dict[str, torch.Tensor]):
        super().__init__(graph)
        self.frozen = frozen

    def run_node(self, n: fx.Node) -> Any:
        if n.op == "call_method" and n.target == "detach":
            if n.name not in self.frozen:
                self.frozen[n.name] = super().run_node(n)
            return self.frozen[n.name]
        return super().run_node(n)


def raw_terms(
    module: Any, inputs: dict[str, torch.Tensor], step: float, frozen: dict | None = None
) -> dict[str, torch.Tensor]:
    """The terms with their graph attached (LossOutput's are detached), optionally through
    a frozen-detach interpreter."""
    captured: list[tuple[torch.Tensor, ...]] = []
    graph = module.graph_module

    def run(*args: Any) -> tuple[torch.Tensor, ...]:
        outputs = FrozenDetach(graph, frozen).run(*args) if frozen is not None else graph(*args)
        captured.append(outputs)
        return outputs

    original = module.__dict__["_graph"]
    module.__dict__["_graph"] = run
    training = module.training
    module.eval()  # states (an ema's average) are the optimizer's constants too: keep them
    try:
        module(step=step, **inputs)
    finally:
        module.train(training)
        module.__dict__["_graph"] = original
    (outputs,) = captured
    names = module.SPEC["terms"]
    return dict(zip(names, outputs[1 : 1 + len(names)], strict=True))


# ---- bounds ------------------------------------------------------------------------------------


def outside(value: float, bounds: Interval, rel: float, overflow: bool = False) -> bool:
    """Whether `value` lies outside `bounds` by more than rounding (open ends read closed;
    with `overflow`, an open infinite end admits the infinity it leads to)."""
    if math.isnan(value):
        return True
    if math.isinf(value):
        end_lo = value < 0 and bounds.lo == -math.inf and (bounds.lo_closed or overflow)
        end_hi = value > 0 and bounds.hi == math.inf and (bounds.hi_closed or overflow)
        return not (end_lo or end_hi)
    if bounds.is_empty:
        return True
    slack_lo = rel * max(1.0, abs(value), abs(bounds.lo) if math.isfinite(bounds.lo) else 0.0)
    slack_hi = rel * max(1.0, abs(value), abs(bounds.hi) if math.isfinite(bounds.hi) else 0.0)
    return value < bounds.lo - slack_lo or value > bounds.hi + slack_hi


def check_bounds(case: Case, samples: int) -> list[str]:
    module = module_of(case)
    ir: SpecIR = module.ir
    codes = diagnostic_codes(case)
    nan_allowed = bool(codes & NAN_HAZARDS)
    overflow = OVERFLOW in codes
    rng = np.random.default_rng(seed_of(str(case), "bounds"))
    failures = []
    for i in range(samples):
        extreme = [0.0, 0.3, 1.0][i % 3]
        scale = [0.1, 1.0, 10.0, 1e3][i % 4]
        masks = "none" if i % 5 == 4 else "random"
        draw = draw_inputs(ir, rng, extreme, scale, masks)
        out = module(step=draw.step, **draw.inputs)
        for term, tensor in out.terms.items():
            value = float(tensor.double())
            if math.isnan(value) and nan_allowed:
                continue
            bounds = Interval.parse(ir.properties[term]["bounds"])
            rel = REL if tensor.dtype == torch.float64 else 1e-4
            if outside(value, bounds, rel, overflow):
                failures.append(
                    f"{case} term `{term}` = {value!r} outside {bounds}; step={draw.step}, "
                    f"inputs={ {k: v.tolist() for k, v in draw.inputs.items()} }"
                )
    return failures


@pytest.mark.parametrize("case", ALL_CASES, ids=[str(c) for c in ALL_CASES])
def test_values_stay_within_the_reported_bounds(case: Case) -> None:
    failures = check_bounds(case, BOUND_SAMPLES)
    assert not failures, "\n".join(failures[:3])


def test_outside_reads_ends_as_rounding_allows() -> None:
    assert not outside(0.0, Interval.parse("(0, inf)"), REL)
    assert not outside(-1e-12, Interval.parse("[0, inf)"), REL)
    assert outside(-1e-6, Interval.parse("[0, inf)"), REL)
    assert outside(-math.inf, Interval.parse("(-inf, 0]"), REL)
    assert not outside(math.inf, Interval.parse("(0, inf)"), REL, overflow=True)
    assert outside(-math.inf, Interval.parse("(0, inf)"), REL, overflow=True)
    assert not outside(-math.inf, Interval.parse("[-inf, 0]"), REL)
    assert outside(math.nan, Interval.parse("[-inf, inf]"), REL)
    assert outside(2.000001, Interval.parse("(0, 2)"), REL)


# ---- convexity ---------------------------------------------------------------------------------


def grad_inputs(ir: SpecIR) -> list[InputSpec]:
    return [i for i in ir.inputs if i.grad]


def convex_terms(case: Case) -> list[str]:
    props = checked_of(case).ir.properties
    return [t for t, p in props.items() if p["convex"] == "proven"]


def check_convexity(case: Case, lines: int, terms: list[str] | None = None) -> list[str]:
    """Midpoint-convexity failures of `terms` (default: those reported convex)."""
    module = module_of(case)
    ir: SpecIR = module.ir
    terms = convex_terms(case) if terms is None else terms
    grads = grad_inputs(ir)
    rng = np.random.default_rng(seed_of(str(case), "convex"))
    failures = []
    for i in range(lines):
        scale = [0.3, 1.0, 5.0, 30.0][i % 4]
        base = draw_inputs(ir, rng, extreme=0.1, scale=scale)
        ends_ = []
        for _ in range(3):  # a, b and the reference point that fixes detached values
            point = dict(base.inputs)
            for spec in grads:
                if spec.name in base.inputs:
                    shape = base.inputs[spec.name].shape
                    n = int(np.prod(shape)) if len(shape) else 1
                    floats = float_values(n, spec.range, rng, 0.1, scale)
                    point[spec.name] = torch.from_numpy(floats).reshape(shape)
            ends_.append(point)
        a, b, reference = ends_
        middle = dict(a)
        for spec in grads:
            if spec.name in a:
                middle[spec.name] = (a[spec.name] + b[spec.name]) / 2
        frozen: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            raw_terms(module, reference, base.step, frozen)
            fa = raw_terms(module, a, base.step, frozen)
            fb = raw_terms(module, b, base.step, frozen)
            fm = raw_terms(module, middle, base.step, frozen)
        for term in terms:
            va, vb, vm = (float(f[term]) for f in (fa, fb, fm))
            if not all(math.isfinite(v) for v in (va, vb, vm)):
                continue  # an infinite end: nothing to compare
            tol = 1e-9 * (1.0 + abs(va) + abs(vb) + abs(vm))
            if vm > (va + vb) / 2 + tol:
                failures.append(
                    f"{case} term `{term}`: f(mid) = {vm!r} > (f(a) + f(b))/2 = "
                    f"{(va + vb) / 2!r}; a={ {k: v.tolist() for k, v in a.items()} }, "
                    f"b={ {k: v.tolist() for k, v in b.items() if k in {g.name for g in grads}} }"
                )
    return failures


CONVEX_CASES = [c for c in ALL_CASES if convex_terms(c)]


@pytest.mark.parametrize("case", CONVEX_CASES, ids=[str(c) for c in CONVEX_CASES])
def test_convex_terms_are_midpoint_convex(case: Case) -> None:
    failures = check_convexity(case, CONVEX_LINES)
    assert not failures, "\n".join(failures[:3])


@pytest.mark.parametrize(("name", "term"), [("cauchy", "cauchy"), ("mse", None)])
def test_midpoint_check_has_teeth(name: str, term: str | None) -> None:
    """The same check, run on a term that is not convex (Cauchy: log(1 + r^2) is concave
    for |r| > 1), finds it; on mse it finds nothing."""
    found = check_convexity(Case(name), 12, [term] if term else None)
    assert bool(found) == (term is not None), found[:1]


def test_frozen_detach_is_the_optimizers_view() -> None:
    """x^2 - 2·detach(x)^2 is convex in x once detach is frozen (LANGUAGE.md's example)."""
    text = "loss f\ninput x : float[N] grad\nterm t = mean(x ^ 2 - 2 * detach(x) ^ 2)\n"
    assert check_text(text).ir.properties["t"]["convex"] == "proven"
    module = lossdsl.load_text(text)
    frozen: dict[str, torch.Tensor] = {}
    ref = torch.tensor([3.0], dtype=torch.float64)
    raw_terms(module, {"x": ref}, 0.0, frozen)
    values = [
        float(raw_terms(module, {"x": torch.tensor([v], dtype=torch.float64)}, 0.0, frozen)["t"])
        for v in (-1.0, 0.0, 1.0)
    ]
    assert values == [1.0 - 18.0, -18.0, 1.0 - 18.0]


# ---- bounded gradients -------------------------------------------------------------------------


def bounded_terms(case: Case) -> list[str]:
    props = checked_of(case).ir.properties
    return [t for t, p in props.items() if p["gradient_bounded"] == "proven"]


def scalable(spec: InputSpec) -> bool:
    lo, hi = ends(spec.range, {})
    return math.isinf(lo) or math.isinf(hi)


def gradient_norms(
    case: Case, term: str, direction: int
) -> tuple[dict[float, float], dict[str, Any]] | None:
    """The gradient norm of `term` in the `grad` inputs along x = anchor + s·u, for growing s,
    the other inputs fixed at moderate values and detached values frozen where s = 1 puts
    them (constants, as the Properties table defines them)."""
    module = module_of(case)
    ir: SpecIR = module.ir
    scaled = [i for i in grad_inputs(ir) if scalable(i)]
    if not scaled:
        return None
    rng = np.random.default_rng(seed_of(str(case), term, direction, "gradient"))
    base = draw_inputs(ir, rng, extreme=0.0, scale=1.0, masks="all")
    anchors, units = {}, {}
    for spec in scaled:
        if spec.name not in base.inputs:
            continue
        shape = base.inputs[spec.name].shape
        lo, hi = ends(spec.range, {})
        u = rng.normal(size=shape)
        if math.isfinite(lo):
            anchors[spec.name], u = lo, np.abs(u) + 1e-3
        elif math.isfinite(hi):
            anchors[spec.name], u = hi, -(np.abs(u) + 1e-3)
        else:
            anchors[spec.name] = 0.0
        units[spec.name] = torch.from_numpy(np.asarray(u, dtype=np.float64))
    frozen: dict[str, torch.Tensor] = {}
    norms = {}
    for s in (*SCALES, FAR):
        inputs = dict(base.inputs)
        leaves = []
        for name, u in units.items():
            leaf = (anchors[name] + s * u).requires_grad_(True)
            inputs[name] = leaf
            leaves.append(leaf)
        for spec in grad_inputs(ir):
            if spec.name in inputs and spec.name not in units:
                inputs[spec.name] = inputs[spec.name].clone().requires_grad_(True)
                leaves.append(inputs[spec.name])
        value = raw_terms(module, inputs, base.step, frozen)[term]
        if not value.requires_grad:
            norms[s] = 0.0
            continue
        grads = torch.autograd.grad(value, leaves, allow_unused=True)
        total = sum(float((g.double() ** 2).sum()) for g in grads if g is not None)
        norms[s] = math.sqrt(total)
    return norms, {k: v.tolist() for k, v in base.inputs.items()}


def gradient_failures(case: Case, directions: int) -> list[str]:
    failures = []
    for term in bounded_terms(case):
        for direction in range(directions):
            found = gradient_norms(case, term, direction)
            if found is None:
                continue
            norms, inputs = found
            near = max(norms[s] for s in SCALES)
            if not all(map(math.isfinite, norms.values())) or norms[FAR] > GROWTH * near + 1e-9:
                failures.append(
                    f"{case} term `{term}`: gradient norms {norms} grow (direction "
                    f"{direction}, inputs {inputs})"
                )
    return failures


BOUNDED_CASES = [c for c in ALL_CASES if bounded_terms(c)]


@pytest.mark.parametrize("case", BOUNDED_CASES, ids=[str(c) for c in BOUNDED_CASES])
def test_bounded_gradients_stay_bounded_far_out(case: Case) -> None:
    failures = gradient_failures(case, GRADIENT_DIRECTIONS)
    assert not failures, "\n".join(failures[:3])


def test_gradient_check_catches_mse() -> None:
    """The check has teeth: mse's gradient grows linearly with the residual."""
    found = gradient_norms(Case("mse"), "mse", 0)
    assert found is not None
    norms, _ = found
    assert norms[FAR] > GROWTH * max(norms[s] for s in SCALES)


# ---- known answers -----------------------------------------------------------------------------


def properties(name: str) -> dict[str, dict[str, str]]:
    checked = check_reference(name)
    assert checked.ok and checked.ir is not None, checked.diagnostics
    return checked.ir.properties


def only_term(name: str) -> dict[str, str]:
    props = properties(name)
    assert name in props, sorted(props)
    return props[name]


@pytest.mark.parametrize(
    "name",
    [
        "mse",
        "huber",
        "smooth_l1",
        "l1",
        "cross_entropy",
        "bce_with_logits",
        "soft_margin",
        "log_cosh",
        "kl_div",
    ],
)
def test_known_convex(name: str) -> None:
    assert only_term(name)["convex"] == "proven"


@pytest.mark.parametrize("name", ["cauchy", "focal"])
def test_known_not_convex(name: str) -> None:
    assert only_term(name)["convex"] == "not proven"


def test_ppo_clipped_surrogate_is_not_reported_convex() -> None:
    for dual_clip in ("on", "off"):
        ir = check_reference("ppo", {"dual_clip": dual_clip}).raise_for_errors()
        assert ir.properties["policy"]["convex"] == "not proven"


@pytest.mark.parametrize("name", ["huber", "smooth_l1", "l1", "cauchy", "log_cosh"])
def test_known_gradient_bounded(name: str) -> None:
    assert only_term(name)["gradient_bounded"] == "proven"


def test_mse_gradient_is_not_bounded() -> None:
    assert only_term("mse")["gradient_bounded"] == "not proven"


@pytest.mark.parametrize(
    "name",
    ["mse", "huber", "l1", "cross_entropy", "bce_with_logits", "cauchy", "log_cosh", "focal"],
)
def test_known_nonnegative(name: str) -> None:
    bounds = Interval.parse(only_term(name)["bounds"])
    assert bounds.lo >= 0, bounds
