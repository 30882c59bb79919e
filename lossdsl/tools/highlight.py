"""Syntax highlighting of `.loss` text: a Pygments lexer (registered as the `loss` lexer through
the `pygments.lexers` entry point, so Sphinx, MkDocs and `pygmentize` find it) and the colours
`lossdsl explain` uses on a terminal. The TextMate grammar for editors is
`editors/loss.tmLanguage.json` beside this file."""

from __future__ import annotations

from pathlib import Path

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from lossdsl.ops.table import CALLABLE_NAMES
from lossdsl.syntax.parser import DECLARATION_KEYWORDS

DECLARATIONS = ("loss", *DECLARATION_KEYWORDS)
MODIFIERS = ("grad", "in", "update", "learned")
DTYPES = ("float", "int", "bool", "f64", "f32", "bf16", "f16")
BUILTIN_VALUES = ("step", "inf", "pi", "world_size")
CALLABLE_OPS = tuple(CALLABLE_NAMES)  # what a spec may call (`select` too)

TEXTMATE_GRAMMAR = Path(__file__).with_name("editors") / "loss.tmLanguage.json"


class LossLexer(RegexLexer):
    """The `.loss` language of lossdsl."""

    name = "Loss"
    aliases = ["loss", "lossdsl"]
    filenames = ["*.loss"]
    url = "https://github.com/"

    tokens = {
        "root": [
            (r"[ \t]+", Whitespace),
            (r"\n", Whitespace),
            (r"#.*?$", Comment.Single),
            (r'"""[\s\S]*?"""', String.Doc),
            (r'"[^"\n]*"', String),
            (
                r"^(" + "|".join(DECLARATIONS) + r")(\s+)",
                bygroups(Keyword.Declaration, Whitespace),
            ),
            (words(MODIFIERS, suffix=r"\b"), Keyword),
            (words(("and", "or", "not"), suffix=r"\b"), Operator.Word),
            (words(("true", "false"), suffix=r"\b"), Keyword.Constant),
            (words(DTYPES, suffix=r"(?=\s*\[)"), Keyword.Type),
            (words(CALLABLE_OPS, prefix=r"\b", suffix=r"(?=\s*\()"), Name.Builtin),
            (r"[A-Za-z_]\w*(?=\s*\()", Name.Function),
            (words(BUILTIN_VALUES, prefix=r"\b", suffix=r"\b"), Name.Builtin.Pseudo),
            (r"(\d[\d_]*\.[\d_]*|\.\d[\d_]*)([eE][+-]?\d+)?", Number.Float),
            (r"\d[\d_]*[eE][+-]?\d+", Number.Float),
            (r"\d[\d_]*", Number.Integer),
            (r"\.\.\.", Punctuation),
            (r"(<=|>=|==|!=|[-+*/^<>=])", Operator),
            (r"[\[\](){},:%]", Punctuation),
            (r"[A-Za-z_]\w*", Name),
            (r".", Text),
        ]
    }


def highlight_explain(text: str) -> str:
    """`lossdsl explain`'s text in terminal colours: the spec-language part with the loss
    lexer, the generated torch.fx code with Pygments' Python lexer."""
    from pygments import highlight
    from pygments.formatters import TerminalFormatter
    from pygments.lexers import PythonLexer

    marker = "generated torch.fx code:\n"
    head, found, code = text.partition(marker)
    keep = {"stripnl": False, "ensurenl": False}  # the text's own line breaks, exactly
    coloured = highlight(head, LossLexer(**keep), TerminalFormatter())
    if found:
        coloured += marker + highlight(code, PythonLexer(**keep), TerminalFormatter())
    return coloured


def textmate_grammar() -> dict[str, object]:
    """The TextMate grammar, from the same lists as the lexer (`python -m
    lossdsl.tools.highlight` writes it to `editors/loss.tmLanguage.json`)."""

    def alternatives(names: tuple[str, ...]) -> str:
        return "(" + "|".join(names) + ")"

    name = "[A-Za-z_][A-Za-z0-9_]*"
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "Loss",
        "scopeName": "source.loss",
        "fileTypes": ["loss"],
        "comment": "The .loss language of lossdsl; written by `python -m lossdsl.tools.highlight`.",
        "patterns": [
            {"include": f"#{rule}"}
            for rule in (
                "comment",
                "docstring",
                "string",
                "declaration",
                "keyword",
                "type",
                "op",
                "call",
                "builtin",
                "number",
                "operator",
            )
        ],
        "repository": {
            "comment": {"name": "comment.line.number-sign.loss", "match": "#.*$"},
            "docstring": {"name": "string.quoted.docstring.loss", "begin": '"""', "end": '"""'},
            "string": {"name": "string.quoted.double.loss", "match": '"[^"\\n]*"'},
            "declaration": {
                "match": rf"^\s*{alternatives(DECLARATIONS)}\s+({name})?",
                "captures": {
                    "1": {"name": "keyword.other.declaration.loss"},
                    "2": {"name": "entity.name.loss"},
                },
            },
            "keyword": {
                "patterns": [
                    {
                        "name": "keyword.other.modifier.loss",
                        "match": rf"\b{alternatives(MODIFIERS)}\b",
                    },
                    {"name": "keyword.operator.word.loss", "match": r"\b(and|or|not)\b"},
                    {"name": "constant.language.loss", "match": r"\b(true|false)\b"},
                ]
            },
            "type": {"name": "storage.type.loss", "match": rf"\b{alternatives(DTYPES)}(?=\s*\[)"},
            "op": {
                "name": "support.function.loss",
                "match": rf"\b{alternatives(CALLABLE_OPS)}(?=\s*\()",
            },
            "call": {"name": "entity.name.function.loss", "match": rf"\b{name}(?=\s*\()"},
            "builtin": {
                "name": "variable.language.loss",
                "match": rf"\b{alternatives(BUILTIN_VALUES)}\b",
            },
            "number": {
                "name": "constant.numeric.loss",
                "match": r"\b(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)([eE][+-]?\d+)?\b",
            },
            "operator": {"name": "keyword.operator.loss", "match": r"<=|>=|==|!=|[-+*/^<>=]"},
        },
    }


def textmate_text() -> str:
    import json

    return json.dumps(textmate_grammar(), indent=2) + "\n"


if __name__ == "__main__":
    TEXTMATE_GRAMMAR.write_text(textmate_text(), encoding="utf-8")
    print(f"wrote {TEXTMATE_GRAMMAR}")
