"""Highlighting: the Pygments lexer (found through its entry point, used by `explain` on a
terminal) and the TextMate grammar for editors, kept in step with the language."""

from __future__ import annotations

import json
import re

import pytest
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, String, Text

import lossdsl
from lossdsl.backend.explain import explain_text
from lossdsl.resources import stdlib_dir
from lossdsl.syntax.parser import DECLARATION_KEYWORDS
from lossdsl.tools.highlight import (
    BUILTIN_VALUES,
    CALLABLE_OPS,
    DTYPES,
    MODIFIERS,
    TEXTMATE_GRAMMAR,
    LossLexer,
    highlight_explain,
    textmate_text,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_the_lexer_is_registered_under_its_names() -> None:
    assert isinstance(get_lexer_by_name("loss"), LossLexer)
    assert isinstance(get_lexer_for_filename("ppo.loss"), LossLexer)


@pytest.mark.parametrize("path", sorted(stdlib_dir().rglob("*.loss")), ids=lambda p: p.name)
def test_every_standard_spec_lexes_without_stray_text(path) -> None:
    tokens = list(LossLexer().get_tokens(path.read_text()))
    stray = [(t, v) for t, v in tokens if t is Error or (t is Text and v.strip())]
    assert stray == []


def test_declarations_types_ops_and_comments_get_their_tokens() -> None:
    text = (
        'loss example\n"""Doc # not a comment."""\n'
        "input x : float[N] grad in [0, 1]  # predictions\n"
        "def twice(v) = 2 * v\n"
        "term t = mean(twice(log(x))) + 1e-3 * step\n"
    )
    tokens = [(t, v) for t, v in LossLexer().get_tokens(text) if v.strip()]
    assert (Keyword.Declaration, "loss") in tokens and (Keyword.Declaration, "term") in tokens
    assert (String.Doc, '"""Doc # not a comment."""') in tokens
    assert (Keyword.Type, "float") in tokens and (Keyword, "grad") in tokens
    assert (Comment.Single, "# predictions") in tokens
    assert (Name.Builtin, "mean") in tokens and (Name.Builtin, "log") in tokens
    assert (Name.Function, "twice") in tokens
    assert (Number.Float, "1e-3") in tokens and (Name.Builtin.Pseudo, "step") in tokens


def test_explain_on_a_terminal_is_coloured_and_says_the_same() -> None:
    text = explain_text(lossdsl.build_ir("huber"))
    coloured = highlight_explain(text)
    assert ANSI.search(coloured)
    assert ANSI.sub("", coloured) == text


def test_the_textmate_grammar_file_is_up_to_date() -> None:
    """After a new op or keyword: `python -m lossdsl.tools.highlight` rewrites it."""
    assert TEXTMATE_GRAMMAR.read_text() == textmate_text()


def test_the_textmate_grammar_names_what_the_language_has() -> None:
    grammar = json.loads(TEXTMATE_GRAMMAR.read_text())
    assert grammar["scopeName"] == "source.loss" and grammar["fileTypes"] == ["loss"]
    rules = grammar["repository"]
    patterns = [rules["comment"]["match"], rules["string"]["match"]]
    patterns += [rules[name]["match"] for name in ("declaration", "type", "op", "call")]
    patterns += [rules[name]["match"] for name in ("builtin", "number", "operator")]
    patterns += [rule["match"] for rule in rules["keyword"]["patterns"]]
    for pattern in patterns:
        re.compile(pattern)  # the patterns use no Oniguruma-only syntax
    declared = re.search(r"\((.*?)\)", rules["declaration"]["match"]).group(1).split("|")
    assert set(DECLARATION_KEYWORDS) | {"loss"} <= set(declared)
    ops = re.search(r"\((.*?)\)", rules["op"]["match"]).group(1).split("|")
    assert ops == list(CALLABLE_OPS)
    assert f"({'|'.join(DTYPES)})" in rules["type"]["match"]
    assert f"({'|'.join(BUILTIN_VALUES)})" in rules["builtin"]["match"]
    modifiers = rules["keyword"]["patterns"][0]["match"]
    assert f"({'|'.join(MODIFIERS)})" in modifiers


def test_the_textmate_comment_rule_finds_the_parsers_comments() -> None:
    path = stdlib_dir() / "rl" / "ppo.loss"
    text = path.read_text()
    body = text[text.index('"""', 3) + 3 :]  # after the docstring, which its own rule takes
    rule = json.loads(TEXTMATE_GRAMMAR.read_text())["repository"]["comment"]["match"]
    found = [m.group() for line in body.splitlines() for m in [re.search(rule, line)] if m]
    assert found == [c.text for c in lossdsl.parse(text).comments]
