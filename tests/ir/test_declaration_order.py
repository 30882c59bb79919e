"""Declarations may come in any order: a name, a dim or a def is visible everywhere in the
spec, whether it is declared before or after the place that uses it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lossdsl.ir import SpecIR, build
from lossdsl.ir.derived import variant
from lossdsl.ir.loader import load_text
from lossdsl.passes.pipeline import PIPELINE
from lossdsl.resources import stdlib_index


def check_in_order(text: str, reorder=lambda decls: decls, base: Path | None = None):
    """The diagnostics and the IR of `text` with its declarations in another order."""
    loaded = load_text(text, "order.loss", base)
    assert loaded.spec is not None and not loaded.diagnostics
    spec = replace(loaded.spec, decls=tuple(reorder(loaded.spec.decls)))
    ir, diagnostics = build(variant(spec, frozenset()), loaded.used)  # derived inputs passed
    if ir is not None:
        for run_pass in PIPELINE:
            ir, found = run_pass(ir)
            diagnostics += found
    return sorted(f"{d.code} {d.span.line}:{d.span.col}" for d in diagnostics), ir


def computation(ir: SpecIR) -> dict[str, str]:
    """What each term, weight and metric computes, as nested text independent of the order
    the nodes were built in (inputs and params by name)."""
    shown: list[str] = []
    for node in ir.nodes:  # operands come before the nodes that read them
        if node.op in ("input", "param", "step"):
            shown.append(node.name or node.op)
            continue
        args = ", ".join(shown[a] for a in node.args)
        attrs = {k: v for k, v in node.attrs.items()}
        shown.append(f"{node.op}({args}; {attrs})" if node.op != "alias" else shown[node.args[0]])
    result = {f"term {t.name}": shown[t.node] for t in ir.terms}
    result.update({f"weight {name}": shown[node] for name, node in ir.weights.items()})
    result.update({f"metric {m.name}": shown[m.node] for m in ir.metrics})
    return result


def assert_same_in_any_order(text: str, base: Path | None = None) -> None:
    written, ir = check_in_order(text, base=base)
    assert written == [] and ir is not None
    reversed_, reordered = check_in_order(text, lambda decls: decls[::-1], base=base)
    assert reversed_ == [] and reordered is not None
    assert computation(reordered) == computation(ir)


def test_a_range_may_name_a_dim_of_an_input_declared_later() -> None:
    assert_same_in_any_order("""loss order
input target : int[N] in [0, V)
input logits : float[N, V] grad
term nll = -mean(gather(log_softmax(logits, dim=V), target, dim=V))
""")


@pytest.mark.parametrize(
    "text",
    [
        # a param whose value reads a param declared after it
        "param a = b * 2\nparam b = linear(1, 0, steps=10)\nterm t = mean(x)\nminimize a * t\n",
        # a let used before it is declared, by a term and by another let
        "term t = mean(y)\nlet y = z * 2\nlet z = square(x)\n",
        # minimize before the terms it weighs
        "minimize 0.5 * a + b\nterm a = mean(x)\nterm b = mean(square(x))\n",
        # a metric reading a let and a term declared after it
        "metric m = y + t\nterm t = mean(y)\nlet y = square(x)\n",
        # select before its static choice
        'term t = select(mode, s=sum(x), m=mean(x))\nparam mode = "m" in {"s", "m"}\n',
        # size(V) and a def's dim argument before the input that declares V
        "let n = size(V)\ndef soft(v, d) = softmax(v, dim=d)\n"
        "term t = mean(soft(w, V)) * n\ninput w : float[N, V] grad\n",
        # a def calling a def declared after it
        "def outer(v) = inner(v) + 1\ndef inner(v) = square(v)\nterm t = mean(outer(x))\n",
    ],
    ids=["param", "let", "minimize", "metric", "select", "dim", "def"],
)
def test_a_name_may_be_used_before_its_declaration(text: str) -> None:
    assert_same_in_any_order("loss order\ninput x : float[N] grad in [0, 1]\n" + text)


def test_use_may_come_after_the_defs_and_terms_that_call_its_defs(tmp_path: Path) -> None:
    (tmp_path / "helpers.loss").write_text("loss helpers\ndef twice(v) = v * 2\n")
    text = "loss order\ninput x : float[N] grad in [0, 1]\nterm t = mean(twice(x))\n"
    text += 'use "helpers.loss"\n'
    assert_same_in_any_order(text, base=tmp_path)


@pytest.mark.parametrize("name", sorted(stdlib_index()))
def test_every_standard_spec_means_the_same_with_its_declarations_reversed(name: str) -> None:
    path = stdlib_index()[name]
    written, ir = check_in_order(path.read_text(), base=path.parent)
    reversed_, reordered = check_in_order(path.read_text(), lambda d: d[::-1], path.parent)
    assert reversed_ == written
    assert ir is not None and reordered is not None
    assert computation(reordered) == computation(ir)
