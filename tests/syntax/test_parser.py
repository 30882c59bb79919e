"""The grammar, by example: what each form parses to, and E100 messages in words."""

from __future__ import annotations

import re

import pytest

import lossdsl
from lossdsl.diagnostics import Diagnostic, LossSpecError, Span
from lossdsl.syntax import ast
from lossdsl.syntax.parser import parse_collecting

# ---- helpers -------------------------------------------------------------------


def spec(body: str) -> ast.SpecAST:
    return lossdsl.parse("loss example\n" + body)


def expr(text: str) -> ast.Expr:
    """The expression of `let e = TEXT`."""
    (decl,) = spec(f"let e = {text}").decls
    assert isinstance(decl, ast.ValueDecl)
    return decl.value


def show(e: ast.Expr) -> str:
    """An expression fully parenthesized, so a test reads its grouping at a glance."""
    if isinstance(e, ast.Number):
        return repr(int(e.value)) if e.is_int else repr(e.value)
    if isinstance(e, ast.Bool):
        return "true" if e.value else "false"
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.ListExpr):
        return "[" + ", ".join(show(i) for i in e.items) + "]"
    if isinstance(e, ast.Unary):
        return f"({e.op} {show(e.operand)})" if e.op == "not" else f"(-{show(e.operand)})"
    if isinstance(e, ast.Binary):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, ast.Call):
        args = [show(a) for a in e.args] + [f"{k.name}={show(k.value)}" for k in e.kwargs]
        return f"{e.func}({', '.join(args)})"
    raise AssertionError(e)


def syntax_errors(text: str) -> list[Diagnostic]:
    tree, diagnostics = parse_collecting(text, "bad.loss")
    assert tree is None
    assert diagnostics and all(d.code == "E100" for d in diagnostics)
    return diagnostics


def only_error(text: str) -> Diagnostic:
    (diagnostic,) = syntax_errors(text)
    return diagnostic


LARK_TOKEN_NAMES = re.compile(
    r"\b(RPAR|LPAR|LSQB|RSQB|LBRACE|RBRACE|NAME|NUMBER|STRING|DOCSTRING|COLON|COMMA|EQUAL"
    r"|ADD_OP|MUL_OP|COMPARE|CIRCUMFLEX|RANGE_OPEN|RANGE_CLOSE|SIGN|ELLIPSIS|INT|GRAD|IN"
    r"|MINUS|LOSS|LET|TERM|__ANON\w*)\b|\$END|Token\(|Unexpected"
)


def assert_in_words(message: str) -> None:
    assert not LARK_TOKEN_NAMES.search(message), message


# ---- declarations ----------------------------------------------------------------


def test_loss_header_names_the_spec_and_keeps_its_docstring() -> None:
    tree = lossdsl.parse('loss ppo_h\n"""Clipped PPO.\n\nToken level."""\n')
    assert tree.name == "ppo_h"
    assert tree.doc == "Clipped PPO.\n\nToken level."
    assert tree.decls == ()
    assert tree.name_span == Span("<string>", 1, 6, 1, 11)


def test_a_spec_without_docstring_has_none() -> None:
    assert lossdsl.parse("loss plain").doc is None


def test_use_takes_a_path_string_or_a_standard_name() -> None:
    by_path, by_name = spec('use "../common.loss"\nuse huber').decls
    assert by_path == ast.Use("../common.loss", True, by_path.span)
    assert by_name == ast.Use("huber", False, by_name.span)


def test_input_with_every_part() -> None:
    (decl,) = spec("input logits : float[B, T, V] grad in [-1e4, inf) = 0").decls
    assert isinstance(decl, ast.InputDecl)
    assert (decl.name, decl.dtype, decl.grad) == ("logits", "float", True)
    assert [d.value for d in decl.dims] == ["B", "T", "V"]
    assert decl.range is not None
    assert (decl.range.lo.value, decl.range.hi.value) == (-1e4, float("inf"))
    assert (decl.range.lo_closed, decl.range.hi_closed) == (True, False)
    assert isinstance(decl.default, ast.Number) and decl.default.value == 0


def test_input_dims_may_be_names_sizes_an_ellipsis_or_nothing() -> None:
    a, b, c = spec("input a : int[B, 3]\ninput b : bool[..., C]\ninput c : f64[]").decls
    assert [d.value for d in a.dims] == ["B", 3]
    assert [d.value for d in b.dims] == ["...", "C"]
    assert c.dims == () and c.dtype == "f64"
    assert not a.grad and a.range is None and a.default is None


def test_a_range_bound_may_be_a_dim_name() -> None:
    (decl,) = spec("input actions : int[B, T] in [0, V)").decls
    assert (decl.range.lo.value, decl.range.hi.value) == (0, "V")
    assert (decl.range.lo_closed, decl.range.hi_closed) == (True, False)


def test_param_with_a_range_and_a_schedule_param() -> None:
    clip, coef = spec(
        "param clip = 0.2 in [0, 1]\nparam coef = linear(0.01, 0, steps=10_000)"
    ).decls
    assert show(clip.value) == "0.2" and clip.range is not None and clip.choice is None
    assert show(coef.value) == "linear(0.01, 0, steps=10000)" and coef.range is None


def test_param_static_choice() -> None:
    (decl,) = spec('param reduction = "mean" in {"mean", "sum", "none"}').decls
    assert decl.value is None
    assert decl.choice == "mean"
    assert decl.choices == ("mean", "sum", "none")


def test_def_with_and_without_arguments() -> None:
    f, g = spec("def masked_mean(x, m) = sum(x, where=m) / max(count(m), 1)\ndef one() = 1").decls
    assert f.params == ("x", "m")
    assert show(f.body) == "(sum(x, where=m) / max(count(m), 1))"
    assert g.params == () and show(g.body) == "1"


def test_let_term_metric_and_minimize() -> None:
    let, term, metric, minimize = spec(
        "let r = a - b\nterm mse = mean(square(r))\nmetric err = abs(r)\nminimize 0.5 * mse"
    ).decls
    assert [(d.kind, d.name) for d in (let, term, metric)] == [
        ("let", "r"),
        ("term", "mse"),
        ("metric", "err"),
    ]
    assert isinstance(minimize, ast.Minimize)
    assert show(minimize.objective) == "(0.5 * mse)"


def test_keywords_are_names_where_a_name_is_expected() -> None:
    decls = spec(
        "input input : float[N]\n"
        "term entropy = entropy(input, dim=N)\n"
        "let grad = input\n"
        "let in = grad + term\n"
        "metric loss = in"
    ).decls
    assert [d.name for d in decls] == ["input", "entropy", "grad", "in", "loss"]
    assert show(decls[1].value) == "entropy(input, dim=N)"
    assert show(decls[3].value) == "(grad + term)"


def test_an_expression_may_run_over_several_lines() -> None:
    (let, term) = spec("let x = a\n    + b\n    * c\nterm t = mean(x)").decls
    assert show(let.value) == "(a + (b * c))"
    assert let.span.end_line == 4


def test_comments_are_ignored_everywhere() -> None:
    tree = lossdsl.parse(
        "# a header comment\nloss c  # the name\n"
        "input x : float[N]  # a comment after an input\n"
        "let y = x +  # mid-expression\n  1\n# the end"
    )
    assert tree.name == "c"
    assert show(tree.decls[1].value) == "(x + 1)"


# ---- expressions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "grouped"),
    [
        ("-x^2", "(-(x ^ 2))"),
        ("2^3^2", "(2 ^ (3 ^ 2))"),
        ("2^-1", "(2 ^ (-1))"),
        ("-2^-2", "(-(2 ^ (-2)))"),
        ("a - b - c", "((a - b) - c)"),
        ("a / b * c", "((a / b) * c)"),
        ("a + b * c ^ d", "(a + (b * (c ^ d)))"),
        ("-a * b", "((-a) * b)"),
        ("a - -b", "(a - (-b))"),
        ("not a < b and c or d", "(((not (a < b)) and c) or d)"),
        ("a or b and c", "(a or (b and c))"),
        ("not not a", "(not (not a))"),
        ("a + 1 >= b * 2", "((a + 1) >= (b * 2))"),
        ("(a + b) * c", "((a + b) * c)"),
        ("-(x^2)", "(-(x ^ 2))"),
        ("(-x)^2", "((-x) ^ 2)"),
    ],
)
def test_precedence_and_associativity(text: str, grouped: str) -> None:
    assert show(expr(text)) == grouped


@pytest.mark.parametrize(
    ("text", "value", "is_int"),
    [
        ("10_000", 10000, True),
        ("3", 3, True),
        ("0.2", 0.2, False),
        ("1e-8", 1e-8, False),
        ("1E+5", 1e5, False),
        (".5", 0.5, False),
        ("1.", 1.0, False),
    ],
)
def test_numbers(text: str, value: float, is_int: bool) -> None:
    number = expr(text)
    assert isinstance(number, ast.Number)
    assert (number.value, number.is_int) == (value, is_int)


def test_true_false_and_the_builtin_names() -> None:
    assert show(expr("where(true, inf, -pi)")) == "where(true, inf, (-pi))"
    assert show(expr("false or step > 10")) == "(false or (step > 10))"


def test_calls_with_positional_and_keyword_arguments_and_dim_lists() -> None:
    call = expr("sum(x, dim=[B, T], where=m, keepdim=true)")
    assert isinstance(call, ast.Call)
    assert [k.name for k in call.kwargs] == ["dim", "where", "keepdim"]
    assert show(call) == "sum(x, dim=[B, T], where=m, keepdim=true)"
    assert show(expr("piecewise([100, 200], [1, 0.5, 0.1])")) == (
        "piecewise([100, 200], [1, 0.5, 0.1])"
    )
    assert show(expr("f()")) == "f()"


def test_nodes_carry_their_spans() -> None:
    tree = spec("let surr = min(ratio * adv,\n  clamp(ratio, 0.8, 1.2) * adv)")
    (decl,) = tree.decls
    assert decl.span == Span("<string>", 2, 1, 3, 32)
    assert decl.name_span == Span("<string>", 2, 5, 2, 9)
    call = decl.value
    assert call.span == Span("<string>", 2, 12, 3, 32)
    assert call.func_span == Span("<string>", 2, 12, 2, 15)
    product = call.args[0]
    assert product.span == Span("<string>", 2, 16, 2, 27)
    assert product.right.span == Span("<string>", 2, 24, 2, 27)
    clamp = call.args[1].left
    assert clamp.span == Span("<string>", 3, 3, 3, 25)
    assert clamp.args[1].span == Span("<string>", 3, 16, 3, 19)


def test_spans_name_the_file() -> None:
    tree = lossdsl.parse("loss f\nlet x = 1", file="specs/f.loss")
    assert tree.decls[0].span.file == "specs/f.loss"


def test_every_standard_spec_parses() -> None:
    from lossdsl.resources import stdlib_dir

    paths = sorted(stdlib_dir().rglob("*.loss"))
    assert paths
    for path in paths:
        lossdsl.parse(path.read_text(), str(path))


# ---- E100 in words ---------------------------------------------------------------


def test_missing_expression_after_equals() -> None:
    error = only_error("loss a\nlet y =\nterm t = mean(y)\n")
    assert error.message == "expected an expression after '=', found 'term'"
    assert (error.span.line, error.span.col) == (3, 1)


def test_missing_expression_at_the_end_of_the_file() -> None:
    error = only_error("loss a\nlet y = ")
    assert "expected an expression after '='" in error.message
    assert "end of the file" not in error.message or "found" not in error.message
    assert (error.span.line, error.span.col) == (2, 8)


def test_a_comment_between_equals_and_the_next_declaration() -> None:
    error = only_error("loss a\n# c\nlet y =  # nothing yet\n\nterm t = 1\n")
    assert error.message == "expected an expression after '=', found 'term'"
    assert (error.span.line, error.span.col) == (5, 1)


def test_unclosed_paren() -> None:
    error = only_error("loss a\nlet y = (x + 1\nterm t = mean(y)\n")
    assert error.message == "expected ')' after '1', found 'term'"
    assert (error.span.line, error.span.col) == (3, 1)


def test_chained_comparison_is_an_error_with_a_fix() -> None:
    error = only_error("loss a\nlet y = lo < x < hi\n")
    assert "do not chain" in error.message
    assert error.fix == "write `a < b and b < c`"
    assert (error.span.line, error.span.col) == (2, 16)


def test_missing_loss_header() -> None:
    error = only_error("input x : float[N]\nterm t = mean(x)\n")
    assert "loss" in error.message and "first line" in error.message
    assert (error.span.line, error.span.col) == (1, 1)


def test_empty_text_asks_for_a_loss_header() -> None:
    error = only_error("")
    assert "loss" in error.message


def test_input_without_colon() -> None:
    error = only_error("loss a\ninput x float[N]\n")
    assert error.message == "expected ':' after 'x', found 'float'"


def test_input_without_dims() -> None:
    error = only_error("loss a\ninput x : float grad\n")
    assert error.message == "expected '[' after 'float', found 'grad'"


def test_stray_character() -> None:
    error = only_error("loss a\nterm t = mean(x) $ 2\n")
    assert error.message.endswith("after ')', found '$'")
    assert "an operator" in error.message
    assert (error.span.line, error.span.col) == (2, 18)


def test_unclosed_range() -> None:
    error = only_error("loss a\ninput p : float[N] in [0, 1\nterm t = mean(p)\n")
    assert error.message == "expected ']' or ')' closing the range after '1', found 'term'"


def test_unclosed_call_at_the_end_of_the_file() -> None:
    error = only_error("loss a\nterm t = mean(x")
    assert "')'" in error.message
    assert (error.span.line, error.span.col) == (2, 16)


def test_unterminated_docstring() -> None:
    error = only_error('loss a\n"""never closed\nterm t = 1\n')
    assert error.span.line == 2


@pytest.mark.parametrize(
    "text",
    [
        "loss a\nlet y =\n",
        "loss a\nlet y = (x\n",
        "loss a\nlet y = a < b < c\n",
        "input x : float[N]\n",
        "loss a\ninput x float[N]\n",
        "loss a\ninput x : float[N\n",
        "loss a\nlet y = x @ 2\n",
        "loss a\ninput p : float[N] in [0, 1\n",
        'loss a\nparam p = "a" in {"a", }\n',
        "loss a\ndef f(x,) = x\n",
        "loss a\nlet y = f(x,, 2)\n",
        "loss a\nlet = 1\n",
        "loss a\nminimize\n",
        "loss a\nuse 3\n",
        "loss\n",
        "loss a b\n",
        "loss a\nlet y = 1 +\n",
        "loss a\nlet y = [1, 2\n",
        "loss a\nlet y = x ^\n",
        'loss a\nlet y = "text"\n',
    ],
)
def test_syntax_errors_are_told_in_words(text: str) -> None:
    for error in syntax_errors(text):
        assert error.message.startswith(("expected", "comparisons do not chain")), error.message
        assert_in_words(error.message)
        assert 1 <= error.span.line <= max(1, text.count("\n") + 1)


def test_several_syntax_errors_in_one_file_are_all_reported() -> None:
    text = (
        "loss broken\n"
        "input x float[N] grad\n"  # 2: missing ':'
        "let a = * x\n"  # 3: missing operand
        "let b = (x + 1\n"  # 4: unclosed paren, found at `term` on line 5
        "term t = mean(x) $\n"  # 5: stray character
        "metric m = a < b < x\n"  # 6: chained comparison
    )
    errors = syntax_errors(text)
    assert [(e.span.line, e.span.col) for e in errors] == [(2, 9), (3, 9), (5, 1), (5, 18), (6, 18)]
    for error in errors:
        assert_in_words(error.message)


def test_parse_raises_loss_spec_error_with_every_syntax_error() -> None:
    with pytest.raises(LossSpecError) as raised:
        lossdsl.parse("loss a\nlet a = \nlet b = )\n", file="two.loss")
    assert [d.code for d in raised.value.diagnostics] == ["E100", "E100"]
    rendered = str(raised.value)
    assert "two.loss:3:1: E100" in rendered and "two.loss:3:9: E100" in rendered
    assert "^" in rendered  # the caret excerpt
