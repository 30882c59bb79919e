"""`^` is the power operator; `**`, as Python spells it, is an E100 that says so."""

from __future__ import annotations

from lossdsl.syntax.parser import parse_collecting


def test_double_star_is_an_error_that_names_the_caret() -> None:
    spec, (error, *others) = parse_collecting(
        "loss a\ninput x : float[N] grad\nterm t = mean(x ** 2)\n", "bad.loss"
    )
    assert spec is None and others == []
    assert error.code == "E100"
    assert error.message == "`**` is not an operator: a power is written `^`"
    assert (error.span.line, error.span.col, error.span.end_col) == (3, 17, 19)  # the `**`
    assert error.fix == "term t = mean(x ^ 2)"


def test_double_star_without_spaces_and_over_several_lines() -> None:
    _, (error,) = parse_collecting("loss a\nlet y = 2\n  * x**y\n", "bad.loss")
    assert (error.span.line, error.span.col) == (3, 6)
    assert error.fix == "* x^y"


def test_a_product_with_a_stray_star_keeps_the_generic_message() -> None:
    _, (error,) = parse_collecting("loss a\nlet y = x * * 2\n", "bad.loss")
    assert "^" not in error.message and error.message.startswith("expected an expression")


def test_the_caret_parses_as_power() -> None:
    spec, errors = parse_collecting("loss a\nlet y = x ^ 2\n", "ok.loss")
    assert spec is not None and errors == []
