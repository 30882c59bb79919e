"""Stability rewrites (issue 3, LANGUAGE.md I500): each rule fires where it should and only
there, keeps the value and gradient of the formula it replaces (float64, random inputs),
and stays finite and accurate where that formula overflows or cancels (float32)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch

import lossdsl
from lossdsl.passes import check_text
from lossdsl.passes.rewrites import REWRITES

HEADER = """loss case
input x : float[B, V] grad
input y : float[B, V] grad
input m : bool[B, V]
input n : int[B, V]
input v : float[V] grad
"""
LINE = HEADER.count("\n") + 1  # the line of `let out = …`
PREFIX = "let out = "


def spec(expr: str) -> str:
    return f"{HEADER}{PREFIX}{expr}\nterm total = sum(out)\nmetric value = out\n"


def rewrites(expr: str) -> list[tuple[int, int, str]]:
    """The I500s a spec computing `expr` gets: (line, col, rule name)."""
    checked = check_text(spec(expr))
    assert checked.ok, checked.diagnostics
    found = []
    for d in checked.diagnostics:
        if d.code == "I500":
            assert d.fix is None
            assert d.message.startswith("rewrote ") and d.message.endswith("]")
            found.append((d.span.line, d.span.col, d.message.rsplit("[", 1)[1][:-1]))
    return found


Formula = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Case:
    rule: str
    expr: str
    original: Formula  # the spec's formula, written by hand in torch: f(x, y, m)
    lowered: str  # what the generated code calls instead
    positive: tuple[str, ...] = ()  # inputs the formula needs > 0
    extreme: dict[str, list[float]] = field(default_factory=dict)  # float32 inputs
    exact: Formula | None = None  # the float64 value there, from a stable formula
    absent: tuple[str, ...] = ("torch.log(",)  # what the generated code no longer calls

    def __str__(self) -> str:
        return f"{self.rule}: {self.expr}"


def softplus64(x: torch.Tensor) -> torch.Tensor:
    """log(1 + e^x) = max(x, 0) + log1p(e^-|x|), exact in float64."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def lse64(x: torch.Tensor, **kw) -> torch.Tensor:
    """log Σ e^x = max + log Σ e^(x - max)."""
    top = x.amax(**kw, keepdim=True) if kw else x.max()
    total = torch.exp(x - top).sum(**kw, keepdim=True) if kw else torch.exp(x - top).sum()
    return top + torch.log(total)


def where0(c, a):
    return torch.where(c, a, torch.zeros_like(a))


CASES = [
    Case(
        "log-softmax",
        "log(softmax(x, dim=V))",
        lambda x, y, m: torch.log(torch.softmax(x, -1)),
        "torch.log_softmax",
        extreme={"x": [1e4, -1e4, 0.0]},
        exact=lambda x, y, m: x - lse64(x, dim=-1),
    ),
    Case(
        "logsumexp",
        "log(sum(exp(x), dim=V))",
        lambda x, y, m: torch.log(torch.exp(x).sum(-1)),
        "torch.logsumexp",
        extreme={"x": [100.0, 99.0, 0.0]},
        exact=lambda x, y, m: lse64(x, dim=-1).squeeze(-1),
    ),
    Case(
        "logsumexp",
        "log(sum(exp(x)))",
        lambda x, y, m: torch.log(torch.exp(x).sum()),
        "torch.logsumexp",
    ),
    Case(
        "logsumexp",
        "log(sum(exp(x), dim=V, keepdim=true))",
        lambda x, y, m: torch.log(torch.exp(x).sum(-1, keepdim=True)),
        "torch.logsumexp",
    ),
    Case(
        "logsumexp",
        "log(sum(exp(x), dim=V, where=m))",
        lambda x, y, m: torch.log(where0(m, torch.exp(x)).sum(-1)),
        "torch.logsumexp",
        extreme={"x": [100.0, 99.0, 1e3], "m": [1, 1, 0]},
        exact=lambda x, y, m: lse64(x[..., :2], dim=-1).squeeze(-1),
    ),
    Case(
        "softplus",
        "log(1 + exp(x))",
        lambda x, y, m: torch.log(1 + torch.exp(x)),
        "torch.logaddexp",
        extreme={"x": [100.0, -20.0]},
        exact=lambda x, y, m: softplus64(x),
    ),
    Case(
        "softplus",
        "log(exp(x) + 1)",
        lambda x, y, m: torch.log(torch.exp(x) + 1),
        "torch.logaddexp",
    ),
    Case(
        "softplus",
        "log1p(exp(x))",
        lambda x, y, m: torch.log1p(torch.exp(x)),
        "torch.logaddexp",
        absent=("torch.log1p", "torch.exp("),
        extreme={"x": [100.0, 1e3]},
        exact=lambda x, y, m: softplus64(x),
    ),
    Case(
        "log1p",
        "log(1 + x)",
        lambda x, y, m: torch.log(1 + x),
        "torch.log1p",
        extreme={"x": [1e-10, 1e-7, -3e-9]},
        exact=lambda x, y, m: torch.log1p(x),
    ),
    Case(
        "log1p",
        "log(x + 1)",
        lambda x, y, m: torch.log(x + 1),
        "torch.log1p",
    ),
    Case(
        "expm1",
        "exp(x) - 1",
        lambda x, y, m: torch.exp(x) - 1,
        "torch.expm1",
        absent=("torch.exp(",),
        extreme={"x": [1e-8, -1e-8, 1e-10]},
        exact=lambda x, y, m: torch.expm1(x),
    ),
    Case(
        "logsigmoid",
        "log(sigmoid(x))",
        lambda x, y, m: torch.log(torch.sigmoid(x)),
        "log_sigmoid",
        extreme={"x": [-100.0, -200.0]},
        exact=lambda x, y, m: -softplus64(-x),
    ),
    Case(
        "log1m-sigmoid",
        "log(1 - sigmoid(x))",
        lambda x, y, m: torch.log(1 - torch.sigmoid(x)),
        "log_sigmoid",
        extreme={"x": [20.0, 100.0]},
        exact=lambda x, y, m: -softplus64(x),
    ),
    Case(
        "xlogx",
        "x * log(x)",
        lambda x, y, m: x * torch.log(x),
        "torch.xlogy",
        positive=("x",),
        extreme={"x": [0.0, 0.5]},  # 0·log 0 = 0, its limit
        exact=lambda x, y, m: where0(x != 0, x * torch.log(x)),
    ),
    Case(
        "xlogy",
        "x * log(y)",
        lambda x, y, m: x * torch.log(y),
        "torch.xlogy",
        positive=("y",),
        extreme={"x": [0.0, 0.5], "y": [0.0, 0.25]},
        exact=lambda x, y, m: where0(x != 0, x * torch.log(y)),
    ),
    Case(
        "xlogy",
        "log(y) * x",
        lambda x, y, m: torch.log(y) * x,
        "torch.xlogy",
        positive=("y",),
    ),
    Case(
        "exp-ratio",
        "exp(x) / exp(y)",
        lambda x, y, m: torch.exp(x) / torch.exp(y),
        "torch.exp",
        absent=(" / ",),
        extreme={"x": [100.0, 200.0], "y": [99.0, 150.0]},
        exact=lambda x, y, m: torch.exp(x - y),
    ),
    Case(
        "log-exp",
        "log(exp(x))",
        lambda x, y, m: torch.log(torch.exp(x)),
        "out = ",
        absent=("torch.exp(", "torch.log("),
        extreme={"x": [100.0, -200.0]},
        exact=lambda x, y, m: x,
    ),
]

# Near misses: each looks like a rule's pattern and must not be rewritten.
NEAR_MISSES = [
    "log(softmax(x, dim=V) + 1e-8)",  # the epsilon changes the value
    "softmax(log(x), dim=V)",
    "log(mean(exp(x), dim=V))",  # mean, not sum
    "log(sum(exp(x), dim=V) + 2)",
    "log(sum(exp(v), where=m))",  # a mask with more dims than the value
    "log(sum(exp(x) * 2, dim=V))",
    "log(2 + x)",
    "log(1 + x + y)",  # (1 + x) + y
    "log(x - 1)",
    "log(1.5 + exp(x))",
    "exp(x) - 2",
    "1 - exp(x)",
    "exp(x) + 1",
    "log(tanh(x))",
    "log(2 * sigmoid(x))",
    "log(2 - sigmoid(x))",
    "log(1 - tanh(x))",
    "0.5 * log(x)",  # a scale, not x·log(y)
    "x * log1p(y)",
    "x * exp(y)",
    "exp(x) / y",
    "x / exp(y)",
    "exp(x) * exp(y)",
    "exp(log(x))",  # not value-preserving for x <= 0
    "log(exp(x) + 0)",
    "log(exp(n))",  # would turn a float into an int
]


# ---- where rules fire ------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rule_fires_once_at_the_rewritten_expression(case: Case) -> None:
    assert rewrites(case.expr) == [(LINE, len(PREFIX) + 1, case.rule)]


@pytest.mark.parametrize("expr", NEAR_MISSES)
def test_near_miss_is_not_rewritten(expr: str) -> None:
    assert rewrites(expr) == []


def test_every_rule_has_cases() -> None:
    assert {rule.name for rule in REWRITES} == {case.rule for case in CASES}


def test_rule_inside_an_expression_is_reported_at_its_own_column() -> None:
    expr = "where(m, 2 * log(softmax(x, dim=V)), 0)"
    assert rewrites(expr) == [(LINE, len(PREFIX) + expr.index("log") + 1, "log-softmax")]


def test_softplus_wins_over_log1p() -> None:
    checked = check_text(spec("log(1 + exp(x))"))
    (i500,) = [d for d in checked.diagnostics if d.code == "I500"]
    assert i500.message == "rewrote log(1 + exp(x)) as softplus(x) [softplus]"


def test_message_names_the_rule_and_the_dims() -> None:
    checked = check_text(spec("log(softmax(x, dim=V))"))
    (i500,) = [d for d in checked.diagnostics if d.code == "I500"]
    assert i500.message == ("rewrote log(softmax(x, dim=V)) as log_softmax(x, dim=V) [log-softmax]")
    assert i500.severity == "info"


def test_rules_compose_to_a_fixed_point() -> None:
    expr = "exp(exp(x) / exp(y)) - 1"
    found = rewrites(expr)
    assert sorted(rule for _, _, rule in found) == ["exp-ratio", "expm1"]
    code = lossdsl.load_text(spec(expr)).code
    assert "torch.expm1" in code and " / " not in code


def test_rewrite_inside_a_def_notes_the_call() -> None:
    text = HEADER + "def lp(z) = log(softmax(z, dim=V))\nlet out = lp(x)\nterm total = sum(out)\n"
    checked = check_text(text)
    (i500,) = [d for d in checked.diagnostics if d.code == "I500"]
    assert (i500.span.line, i500.span.col) == (LINE, 13)
    assert i500.notes and "`lp` called at" in i500.notes[0]


# ---- what the IR and the code look like after --------------------------------------


def test_rewritten_node_keeps_span_and_name() -> None:
    text = spec("log(softmax(x, dim=V))")
    before = check_text(text, file="a.loss")
    ir = before.raise_for_errors()
    out = ir.node(next(v.node for v in ir.lets if v.name == "out"))
    assert out.op == "log_softmax" and out.name == "out"
    assert (out.span.line, out.span.col) == (LINE, len(PREFIX) + 1)
    assert "out = torch.log_softmax(" in lossdsl.load_text(text).code


def test_unused_inner_nodes_are_dropped_and_shared_ones_kept() -> None:
    ir = check_text(spec("log(1 + exp(x))")).raise_for_errors()
    assert not {"exp", "log", "add"} & {n.op for n in ir.nodes}
    text = HEADER + ("let p = softmax(x, dim=V)\nterm total = -sum(log(p))\nmetric probs = p\n")
    ir = check_text(text).raise_for_errors()
    ops = [n.op for n in ir.nodes]
    assert "softmax" in ops and "log_softmax" in ops and "log" not in ops


def test_rewrite_through_a_let_keeps_the_let() -> None:
    text = HEADER + "let p = sigmoid(x)\nlet out = log(p)\nterm total = sum(out)\n"
    ir = check_text(text).raise_for_errors()
    assert ir.node(next(v.node for v in ir.lets if v.name == "out")).op == "logsigmoid"
    assert ir.node(next(v.node for v in ir.lets if v.name == "p")).op == "sigmoid"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_generated_code_calls_the_stable_op(case: Case) -> None:
    code = lossdsl.load_text(spec(case.expr)).code
    assert case.lowered in code
    for call in case.absent:
        assert call not in code


# ---- value preservation (float64) ----------------------------------------------------

B, V = 4, 5


def run(expr: str, values: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """The elementwise value of `out` and the gradient of sum(out) by x and y."""
    module = lossdsl.load_text(spec(expr))
    result = module(**values)
    grads = torch.autograd.grad(result.loss, [values["x"], values["y"]], allow_unused=True)
    return result.metrics["value"], dict(zip("xy", grads, strict=True))


def reference(case: Case, values: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    x, y = (values[k].detach().clone().requires_grad_(True) for k in "xy")
    out = case.original(x, y, values["m"])
    grads = torch.autograd.grad(out.sum(), [x, y], allow_unused=True)
    return out.detach(), dict(zip("xy", grads, strict=True))


def random_inputs(case: Case, seed: int, dtype=torch.float64) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def tensor(name: str, *shape: int) -> torch.Tensor:
        if name in case.positive:
            t = torch.rand(*shape, generator=generator, dtype=dtype) * 3 + 0.05
        elif case.rule == "log1p":
            t = torch.rand(*shape, generator=generator, dtype=dtype) - 0.5
        else:
            t = torch.randn(*shape, generator=generator, dtype=dtype) * 3
        return t.requires_grad_(True)

    mask = torch.rand(B, V, generator=generator) > 0.4
    mask[:, 0] = True
    return {
        "x": tensor("x", B, V),
        "y": tensor("y", B, V),
        "m": mask,
        "n": torch.randint(0, 3, (B, V), generator=generator),
        "v": tensor("v", V),
    }


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rewrite_preserves_value_and_gradient(case: Case, seed: int) -> None:
    values = random_inputs(case, seed)
    got, got_grads = run(case.expr, values)
    want, want_grads = reference(case, values)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    for name in "xy":
        if want_grads[name] is None:
            assert got_grads[name] is None or torch.all(got_grads[name] == 0)
        else:
            torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-10, atol=1e-12)


# ---- accuracy where the original fails (float32) ---------------------------------------


def extreme_inputs(case: Case, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    columns = len(case.extreme["x"])

    def tensor(name: str, default: float) -> torch.Tensor:
        row = case.extreme.get(name, [default] * columns)
        return torch.tensor([row], dtype=dtype, requires_grad=True)

    return {
        "x": tensor("x", 0.0),
        "y": tensor("y", 1.0),
        "m": torch.tensor([case.extreme.get("m", [1] * columns)]) > 0,
        "n": torch.zeros(1, columns, dtype=torch.int64),
        "v": torch.zeros(columns, dtype=dtype),
    }


ACCURACY = [case for case in CASES if case.extreme]


@pytest.mark.parametrize("case", ACCURACY, ids=str)
def test_rewrite_is_accurate_where_the_original_fails(case: Case) -> None:
    assert case.exact is not None
    exact64 = extreme_inputs(case, torch.float64)
    exact = case.exact(*(exact64[k].detach() for k in "xym"))
    inputs32 = extreme_inputs(case, torch.float32)
    got = lossdsl.load_text(spec(case.expr))(**inputs32).metrics["value"]
    naive = case.original(*(inputs32[k].detach() for k in "xym"))
    assert got.dtype == naive.dtype == torch.float32

    def accurate(value: torch.Tensor) -> bool:
        value = value.double()
        return bool(
            torch.isfinite(value).all()
            and torch.allclose(value, exact, rtol=1e-6, atol=0, equal_nan=False)
        )

    assert accurate(got), (got, exact)
    assert not accurate(naive), (naive, exact)


def test_exact_references_are_exact() -> None:
    """The float64 references of the accuracy tests agree with math at sample points."""
    x = torch.tensor([100.0, -20.0, 0.5], dtype=torch.float64)
    for value, want in zip(
        softplus64(x),
        [100 + math.log1p(math.exp(-100)), 2.061153620314381e-09, math.log1p(math.exp(0.5))],
        strict=True,
    ):
        assert math.isclose(float(value), want, rel_tol=1e-12)
    row = torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float64)
    assert torch.equal(lse64(row, dim=-1), torch.tensor([[1e4]], dtype=torch.float64))
