"""Specs of any size check, load and run: nothing on the way from text to a running module
recurses on the spec's size (chains of lets, long sums, deep expressions), and the
tests never raise Python's recursion limit to get there."""

from __future__ import annotations

import sys
import time
import warnings

import pytest
import torch

import lossdsl
from lossdsl.backend.explain import explain_text
from lossdsl.ir import build
from lossdsl.passes.evaluate import scalar_value
from lossdsl.passes.pipeline import check_text

HEADER = "loss big\ninput x : float[N] grad in [0, 1]\n"


@pytest.fixture(autouse=True)
def default_recursion_limit() -> None:
    assert sys.getrecursionlimit() <= 1100  # what a user has; the tests never raise it


def clean(text: str):
    checked = check_text(text, "big.loss")
    assert [d.code for d in checked.diagnostics] == []
    assert checked.ir is not None
    return checked.ir


def chain_of_lets(count: int) -> str:
    return "let a0 = x\n" + "".join(f"let a{i} = a{i - 1} + 1\n" for i in range(1, count))


def test_ten_thousand_chained_lets_and_two_thousand_terms_check_load_and_run() -> None:
    terms = 2000
    text = HEADER + chain_of_lets(10_000) + "let s = mean(square(a9999))\n"
    text += "".join(f"term t{i} = s * {i % 3}\n" for i in range(terms))
    text += "minimize " + " + ".join(f"t{i}" for i in range(terms)) + "\n"
    text += "metric step_of_the_chain = a9999 - a9998\n"
    with warnings.catch_warnings():
        warnings.simplefilter("error", lossdsl.LossSpecWarning)  # checks without a warning
        loss_fn = lossdsl.load_text(text, file="big.loss")
    x = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    out = loss_fn(x=x)
    out.loss.backward()
    per_term = 9999.0**2
    weight = sum(i % 3 for i in range(terms))  # every term is s times its factor
    assert out.loss.item() == pytest.approx(weight * per_term)
    expected = torch.full((3,), weight * 2 * 9999.0 / 3, dtype=torch.float64)
    torch.testing.assert_close(x.grad, expected)
    torch.testing.assert_close(out.metrics["step_of_the_chain"], torch.ones(3, dtype=torch.float64))


def test_lets_declared_after_their_use_build_in_dependency_order() -> None:
    count = 3000  # lines in reverse: every let is used before it is declared
    lines = chain_of_lets(count).splitlines()
    ir = clean(HEADER + "term t = mean(a2999)\n" + "\n".join(reversed(lines)) + "\n")
    last = next(v for v in ir.lets if v.name == "a2999")
    assert ir.node(last.node).op == "add"


def test_a_cycle_through_thousands_of_lets_is_one_e106() -> None:
    lines = "let a0 = a2999\n" + "".join(f"let a{i} = a{i - 1} + 1\n" for i in range(1, 3000))
    checked = check_text(HEADER + lines + "term t = mean(a5)\n", "cycle.loss")
    (error,) = checked.diagnostics
    assert error.code == "E106" and error.message.startswith("`a0` is defined in terms of itself")
    assert (error.span.line, error.span.col) == (4, 1 + len("let a1 = "))


def test_a_chain_of_schedule_params_evaluates_lowers_and_explains() -> None:
    count = 2000
    params = "param p0 = linear(0, 1, steps=100)\n"
    params += "".join(f"param p{i} = p{i - 1} * 1\n" for i in range(1, count))
    ir = clean(HEADER + params + f"term t = mean(x)\nminimize p{count - 1} * t\n")
    assert scalar_value(ir, ir.weights["t"], step=50) == pytest.approx(0.5)
    assert "weight of t: 0 → 0, 25 → 0.25" in explain_text(ir)
    loss_fn = lossdsl.load_text(HEADER + params + f"term t = mean(x)\nminimize p{count - 1} * t\n")
    assert loss_fn(x=torch.ones(2), step=25).weights["t"].item() == pytest.approx(0.25)


def test_a_deep_operand_repeated_is_recognised_by_the_rewrites_and_the_patterns() -> None:
    deep = "(x" + " + 0" * 3000 + ")"
    # x·log(x) -> xlogx compares the two operands node by node (3,000 deep).
    checked = check_text(HEADER + f"term t = mean({deep} * log({deep}))\n", "deep.loss")
    assert [d.code for d in checked.diagnostics] == ["I500"]
    assert checked.ir is not None and any(node.op == "xlogx" for node in checked.ir.nodes)
    # Huber's branch form, matched by the lowering's pattern, with a deep residual.
    huber = f"where(abs({deep}) < 1, 0.5 * square({deep}), 1 * (abs({deep}) - 0.5 * 1))"
    loss_fn = lossdsl.load_text(HEADER + f"term t = mean({huber})\n")
    assert "torch.where" not in loss_fn.code
    x = torch.tensor([0.25, 0.5])
    torch.testing.assert_close(loss_fn(x=x).loss, (0.5 * x**2).mean())


@pytest.mark.parametrize(
    "body",
    [
        "term t = mean(" + "-" * 5000 + "x)\n",
        "term t = mean(where(" + "not " * 3000 + "(x > 0), x, 0))\n",
        "term t = mean(x" + " ^ 1" * 3000 + ")\n",
        "term t = mean(x" + " + 0" * 20_000 + ")\n",
    ],
    ids=["5000-minus", "3000-not", "3000-power", "20000-plus"],
)
def test_deep_expressions_check_end_to_end(body: str) -> None:
    ir = clean(HEADER + body)
    assert len(ir.nodes) > 3000


def doubling_defs(depth: int, argument: str = "y") -> str:
    """f1(y) = f0(y) + f0(y), …: inlined naively, f{depth} is 2^depth copies of f0."""
    lines = "def f0(y) = y * 2\n"
    lines += "".join(
        f"def f{i}(y) = f{i - 1}({argument}) + f{i - 1}({argument})\n" for i in range(1, depth + 1)
    )
    return lines


def built_nodes(text: str) -> int:
    """How many nodes the IR builder makes (before the passes, CSE included, run)."""
    ir, diagnostics = build(lossdsl.parse(text), [])
    assert ir is not None and diagnostics == []
    return len(ir.nodes)


def test_defs_that_call_the_previous_one_twice_inline_in_linear_time() -> None:
    text = HEADER + doubling_defs(18) + "term t = mean(f18(x))\n"
    started = time.perf_counter()
    clean(text)
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"{elapsed:.1f} s"  # was 17 s and 617 MB: 2^18 copies of f0's body
    assert built_nodes(text) < 100  # one node per def: identical calls are one node
    x = torch.tensor([0.25, 0.5], dtype=torch.float64)
    assert lossdsl.load_text(text)(x=x).loss.item() == pytest.approx(2**18 * 2 * 0.375)


def test_equal_arguments_written_twice_inside_a_def_are_one_call() -> None:
    text = HEADER + doubling_defs(18, argument="y + 1") + "term t = mean(f18(x))\n"
    started = time.perf_counter()
    assert built_nodes(text) < 150
    assert time.perf_counter() - started < 5


def test_an_error_inside_a_def_called_many_times_alike_is_reported_once() -> None:
    text = HEADER + doubling_defs(18).replace("y * 2", "y * [2]") + "term t = mean(f18(x))\n"
    checked = check_text(text, "defs.loss")
    (error,) = checked.diagnostics
    assert error.code == "E201" and "a list is only allowed" in error.message
    assert "`f0` called at" in error.message  # still names the call it was inlined through


def test_a_def_called_on_different_values_is_inlined_for_each() -> None:
    text = HEADER + "def twice(y) = y * 2\nterm t = mean(twice(x) + twice(x + 1))\n"
    loss_fn = lossdsl.load_text(text)
    x = torch.tensor([1.0, 3.0])
    assert loss_fn(x=x).loss.item() == pytest.approx((2 * x + 2 * (x + 1)).mean().item())


def test_defs_nested_thousands_deep_inline_and_keep_a_short_trail() -> None:
    depth = 3000
    defs = "def f0(y) = log(y)\n" + "".join(
        f"def f{i}(y) = f{i - 1}(y) * 2\n" for i in range(1, depth)
    )
    started = time.perf_counter()
    checked = check_text(HEADER + defs + f"term t = mean(f{depth - 1}(x))\n", "deep.loss")
    assert time.perf_counter() - started < 10  # each level recorded its whole trail: minutes
    (warning,) = [d for d in checked.diagnostics if d.code == "W300"]  # log(0) in f0
    assert warning.span.line == 3
    # the trail names the outer and inner calls and counts the rest
    assert len(warning.notes) == 9 and "2992 calls in between" in warning.notes[4]
    assert f"`f{depth - 1}` called at" in warning.notes[0] and "`f0` called" in warning.notes[-1]
