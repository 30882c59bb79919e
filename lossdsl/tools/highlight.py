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

from lossdsl.ops import OPS

DECLARATIONS = ("loss", "use", "input", "param", "def", "let", "term", "minimize", "metric")
DECLARATIONS_V2 = ("state",)
MODIFIERS = ("grad", "in", "update", "learned")
DTYPES = ("float", "int", "bool", "f64", "f32", "bf16", "f16")
BUILTIN_VALUES = ("step", "inf", "pi", "world_size")
# IR ops that are written as operators, not called by name.
_OPERATOR_OPS = {"add", "sub", "mul", "div", "neg", "pow", "eq", "ne", "lt", "le", "gt", "ge"}
_OPERATOR_OPS |= {"and", "or", "not", "maximum", "minimum"}
CALLABLE_OPS = tuple(sorted((set(OPS) - _OPERATOR_OPS) | {"select"}))

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
                r"^(" + "|".join(DECLARATIONS + DECLARATIONS_V2) + r")(\s+)",
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
