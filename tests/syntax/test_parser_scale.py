"""Specs of any size parse: nesting thousands deep needs no recursion, and a syntax error
after a very long token is reported at once, in a message of readable length."""

from __future__ import annotations

import sys
import time

import pytest

import lossdsl
from lossdsl.syntax import ast
from lossdsl.syntax.parser import parse_collecting

HEADER = "loss big\ninput x : float[N] grad\n"


def depth(e: ast.Expr) -> int:
    """How deep the expression nests, counted without recursion."""
    deepest, stack = 0, [(e, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, ast.Unary):
            stack.append((node.operand, level + 1))
        elif isinstance(node, ast.Binary):
            stack += [(node.left, level + 1), (node.right, level + 1)]
        elif isinstance(node, ast.Call):
            stack += [(a, level + 1) for a in node.args]
            stack += [(k.value, level + 1) for k in node.kwargs]
    return deepest


def last_value(text: str) -> ast.Expr:
    decl = lossdsl.parse(HEADER + text).decls[-1]
    assert isinstance(decl, ast.ValueDecl | ast.Minimize)
    return decl.value if isinstance(decl, ast.ValueDecl) else decl.objective


@pytest.mark.parametrize(
    ("text", "at_least"),
    [
        ("term t = mean(" + "-" * 5000 + "x)\n", 5000),
        ("term t = mean(where(" + "not " * 3000 + "(x > 0), x, 0))\n", 3000),
        ("term t = mean(x" + " ^ 1" * 3000 + ")\n", 3000),
        ("term t = mean(x" + " + 0" * 20_000 + ")\n", 20_000),
        ("let y = " + "(" * 3000 + "x" + ")" * 3000 + " * " + "f(" * 2000 + "x" + ")" * 2000, 2000),
    ],
    ids=["5000-minus", "3000-not", "3000-power", "20000-plus", "3000-parens-2000-calls"],
)
def test_deeply_nested_expressions_parse_within_the_recursion_limit(text, at_least) -> None:
    assert depth(last_value(text)) >= at_least
    assert sys.getrecursionlimit() <= 1000 + 100  # the tests never raise it


def test_minimize_over_two_thousand_terms_parses() -> None:
    terms = "".join(f"term t{i} = mean(x)\n" for i in range(2000))
    objective = last_value(terms + "minimize " + " + ".join(f"t{i}" for i in range(2000)))
    assert isinstance(objective, ast.Binary) and depth(objective) == 2000


def test_a_syntax_error_after_a_very_long_name_is_reported_fast() -> None:
    name = "a" * 40_000
    started = time.perf_counter()
    tree, diagnostics = parse_collecting(f"loss x\nlet {name} = = 1\n", "long.loss")
    elapsed = time.perf_counter() - started
    assert tree is None
    (error,) = diagnostics
    assert (error.code, error.span.line, error.span.col) == ("E100", 2, 40_008)
    assert elapsed < 5, f"{elapsed:.1f} s"  # was 18 s: a `$`-anchored search per position


def test_a_very_long_token_is_shortened_in_the_message() -> None:
    name = "b" * 40_000
    tree, diagnostics = parse_collecting(f"loss x\nlet y = 1 +\nlet z = {name} {name}\n", "l.loss")
    assert tree is None
    for error in diagnostics:
        assert len(error.message) < 300, error.message
    assert any("bbbb…" in error.message for error in diagnostics)
