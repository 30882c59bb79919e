"""Text to AST with Lark (LALR, strict), and Lark's errors turned into E100 diagnostics."""

from __future__ import annotations

import re
import sys
from contextvars import ContextVar
from dataclasses import replace
from functools import cache

import lark
from lark import Lark, Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.visitors import Transformer_NonRecursive

from lossdsl.cache import cache_dir, usable_cache_file
from lossdsl.diagnostics import Diagnostic, LossSpecError, Span
from lossdsl.resources import grammar_path
from lossdsl.syntax import ast

DECLARATION_KEYWORDS = (
    "use",
    "input",
    "param",
    "state",
    "def",
    "let",
    "term",
    "minimize",
    "metric",
)

# The comments the lexer skips, collected while one text is parsed (the Lark instance is shared,
# so its callback appends to the list of the parse under way, if any).
_comments: ContextVar[list[Token] | None] = ContextVar("lossdsl_comments", default=None)


def _record_comment(token: Token) -> Token:
    found = _comments.get()
    if found is not None:
        found.append(token)
    return token


@cache
def _lark() -> Lark:
    return Lark(
        grammar_path().read_text(),
        parser="lalr",
        strict=True,
        propagate_positions=True,
        maybe_placeholders=True,
        start=["start", "decls"],
        cache=_parser_cache_file(),
        lexer_callbacks={"COMMENT": _record_comment},
    )


def _parser_cache_file() -> str | bool:
    """Where Lark pickles the built LALR tables (building them costs more than the rest of
    `lossdsl check`): the user's lossdsl cache folder, as for the IR cache (`LOSSDSL_CACHE=0`
    turns it off, `LOSSDSL_CACHE_DIR` moves it). Lark stores a hash of the grammar text, its
    options and Lark's version in the file and rebuilds when it does not match, so an edited
    grammar is never served stale; the name carries the Python version the pickle is for."""
    folder = cache_dir()
    if folder is None:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    python = "".join(map(str, sys.version_info[:2]))
    tables = folder / f"parser-lark{lark.__version__}-py{python}.pickle"
    return str(tables) if usable_cache_file(tables) else False


def parse(text: str, file: str = "<string>") -> ast.SpecAST:
    """Parse a spec; raises `LossSpecError` with every syntax error found."""
    spec, diagnostics = parse_collecting(text, file)
    if diagnostics or spec is None:
        raise LossSpecError(diagnostics, {file: text})
    return spec


def parse_collecting(
    text: str, file: str = "<string>"
) -> tuple[ast.SpecAST | None, list[Diagnostic]]:
    """Parse, and on a syntax error resume at the next declaration to find the others."""
    diagnostics: list[Diagnostic] = []
    comments: list[Token] = []
    recording = _comments.set(comments)
    try:
        tree = _lark().parse(text, start="start")
    except UnexpectedInput as error:
        diagnostics.append(_syntax_diagnostic(error, text, file))
        _collect_later_errors(text, file, error, diagnostics)
        return None, diagnostics
    finally:
        _comments.reset(recording)
    spec = _ToAst(file).transform(tree)
    return replace(spec, comments=tuple(_comment(token, file) for token in comments)), []


def _comment(token: Token, file: str) -> ast.Comment:
    text = str(token).rstrip("\r")  # a CRLF file's line end is not part of the comment
    line, col = token.line or 1, token.column or 1
    return ast.Comment(text, Span(file, line, col, line, col + len(text)))


def _collect_later_errors(
    text: str, file: str, error: UnexpectedInput, found: list[Diagnostic]
) -> None:
    resumed = -1
    while len(found) < 20:
        resume = _resume_offset(text, found[-1].span)
        if resume is None or resume <= resumed:
            return
        resumed = resume
        blanked = re.sub(r"[^\n]", " ", text[:resume]) + text[resume:]
        try:
            _lark().parse(blanked, start="decls")
            return
        except UnexpectedInput as later:
            found.append(_syntax_diagnostic(later, text, file, start="decls"))


def _resume_offset(text: str, span: Span) -> int | None:
    """Where to parse on after an error at `span`: at the declaration keyword it points at
    (the declaration before it was cut short), else at the next line starting a declaration."""
    lines = _lines(text)
    if not 1 <= span.line <= len(lines):
        return None
    line = lines[span.line - 1]
    words = line[span.col - 1 :].split(maxsplit=1)
    if not line[: span.col - 1].strip() and words and words[0] in DECLARATION_KEYWORDS:
        return sum(len(earlier) for earlier in lines[: span.line - 1]) + span.col - 1
    return _next_declaration_offset(text, span.line)


def _next_declaration_offset(text: str, after_line: int) -> int | None:
    offset = 0
    for number, line in enumerate(_lines(text), start=1):
        words = line.split()
        if number > after_line and words and words[0] in DECLARATION_KEYWORDS:
            return offset
        offset += len(line)
    return None


# ---- E100 in words -----------------------------------------------------------

_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "a dim size",
    "STRING": 'a string ("…")',
    "DOCSTRING": "a docstring",
    "COLON": "':'",
    "COMMA": "','",
    "EQUAL": "'='",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "GRAD": "'grad'",
    "IN": "'in'",
    "LEARNED": "'learned'",
    "UPDATE": "'update'",
    "ELLIPSIS": "'...'",
    "RANGE_OPEN": "'[' or '(' opening a range",
    "RANGE_CLOSE": "']' or ')' closing the range",
    "COMPARE": "a comparison",
    "ADD_OP": "an operator",
    "MUL_OP": "an operator",
    "$END": "the end of the file",
}
_EXPRESSION_START = {"NAME", "NUMBER", "LPAR", "MINUS", "NOT", "TRUE", "FALSE", "LSQB", "SIGN"}
_OPERATORS = {"ADD_OP", "MUL_OP", "COMPARE", "CIRCUMFLEX", "AND", "OR"}


def _describe_expected(expected: set[str]) -> str:
    keywords = {name.lower() for name in expected} & set(DECLARATION_KEYWORDS)
    parts: list[str] = []
    if expected & _EXPRESSION_START and ("NAME" in expected or "NUMBER" in expected):
        if "NUMBER" in expected or "LPAR" in expected:
            parts.append("an expression")
        expected = expected - _EXPRESSION_START
    if expected & _OPERATORS:
        parts.append("an operator")
        expected = expected - _OPERATORS
    if keywords:
        parts.append("a declaration (" + ", ".join(sorted(keywords)) + ")")
        expected = {name for name in expected if name.lower() not in keywords}
    for name in sorted(expected):
        if name == "LOSS":
            parts.append("the header `loss <name>` on the first line")
        elif name in _WORDS:
            word = _WORDS[name]
            if word not in parts:
                parts.append(word)
        elif name not in ("$END",):
            parts.append(f"'{name.lower()}'")
    if not parts:
        return "something else"
    return ", ".join(parts[:-1]) + (" or " if len(parts) > 1 else "") + parts[-1]


# The tokens `_previous_token` recognises, each written backwards: matched from the end of
# the text (on the reversed text, anchored), the search costs the token's length, where a
# `$`-anchored forward search would retry at every position of a long name.
_TOKENS_REVERSED = [
    re.compile(r"[A-Za-z0-9_]*[A-Za-z_]"),  # a name
    re.compile(r"[0-9_.eE+-]*[0-9]"),  # a number
    re.compile(r'"[^"\n]*"'),  # a string
    re.compile(r"\.\.\.|=[<>=!]|\S"),  # `...`, a two-character comparison, one character
]
_LONGEST_SHOWN = 40  # characters of a token quoted in a message


def _previous_token(text: str, offset: int) -> str | None:
    """The last token before `offset`, comments skipped (the longest reading of its end)."""
    before = re.sub(r"#[^\n]*", "", text[:offset]).rstrip()
    backwards = before[::-1]
    matches = [m.group() for p in _TOKENS_REVERSED if (m := p.match(backwards))]
    return _shortened(max(matches, key=len)[::-1]) if matches else None


def _shortened(token: str) -> str:
    """A token as quoted in a message: a very long one is cut (`aaaa…`)."""
    return token if len(token) <= _LONGEST_SHOWN else token[: _LONGEST_SHOWN - 1] + "…"


def _expected_terminals(error: UnexpectedInput, text: str, start: str) -> set[str]:
    """The terminals the parser would accept where it failed (exact, not LALR's merged set)."""
    try:
        if isinstance(error, UnexpectedToken):
            return set(error.accepts or error.expected)
        if isinstance(error, UnexpectedCharacters):
            interactive = _lark().parse_interactive(text[: error.pos_in_stream], start=start)
            interactive.exhaust_lexer()
            return set(interactive.accepts())
    except Exception:  # noqa: BLE001 - fall back to what Lark reported
        pass
    return set(getattr(error, "expected", None) or getattr(error, "allowed", None) or ())


def _syntax_diagnostic(
    error: UnexpectedInput, text: str, file: str, start: str = "start"
) -> Diagnostic:
    line = max(1, int(error.line)) if isinstance(error.line, int) and error.line > 0 else 1
    col = max(1, int(error.column)) if isinstance(error.column, int) and error.column > 0 else 1
    offset = error.pos_in_stream if isinstance(error.pos_in_stream, int) else len(text)
    if isinstance(error, UnexpectedEOF) or (
        isinstance(error, UnexpectedToken) and error.token.type == "$END"
    ):
        line, col = _end_position(text)
        offset = len(text)
    width = 1
    found = ""
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        width = max(1, len(str(error.token)))
        found = f", found '{_shortened(str(error.token))}'"
    elif isinstance(error, UnexpectedCharacters):
        found = f", found '{text[offset]}'" if offset < len(text) else ""
    span = Span(file, line, col, line, col + width)
    python_power = _python_power(error, text, file)
    if python_power is not None:
        return python_power
    if isinstance(error, UnexpectedToken) and error.token.type == "COMPARE":
        return Diagnostic(
            "E100",
            "comparisons do not chain: `a < b < c` is not allowed",
            span,
            fix="write `a < b and b < c`",
        )
    expected_names = _expected_terminals(error, text, start)
    if not text.strip() or "LOSS" in expected_names:
        return Diagnostic(
            "E100",
            f"expected the header `loss <name>` on the first line{found}",
            span,
            fix="start the spec with `loss my_loss`",
        )
    previous = _previous_token(text, offset)
    stray = _keyword_taken_as_name(text, offset)
    if stray is not None:
        # `let a =` followed by a new declaration: the keyword was read as a name.
        keyword_offset, before = stray
        line = text.count("\n", 0, keyword_offset) + 1
        col = keyword_offset - (text.rfind("\n", 0, keyword_offset) + 1) + 1
        keyword = text[keyword_offset:].split()[0]
        span = Span(file, line, col, line, col + len(keyword))
        return Diagnostic(
            "E100", f"expected an expression after '{before}', found '{keyword}'", span
        )
    after = f" after '{previous}'" if previous else ""
    message = f"expected {_describe_expected(expected_names)}{after}{found}"
    return Diagnostic("E100", message, span)


def _python_power(error: UnexpectedInput, text: str, file: str) -> Diagnostic | None:
    """`x ** 2` written as in Python: the second `*` is where parsing stops."""
    if not (isinstance(error, UnexpectedToken) and str(error.token) == "*"):
        return None
    start = error.token.start_pos
    if not isinstance(start, int) or start < 1 or text[start - 1] != "*":
        return None
    line, col = error.token.line, error.token.column
    if not isinstance(line, int) or not isinstance(col, int) or col < 2:
        return None
    span = Span(file, line, col - 1, line, col + 1)
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", start)
    written = text[line_start : len(text) if line_end < 0 else line_end]
    offset = start - 1 - line_start
    fixed = (written[:offset] + "^" + written[offset + 2 :]).strip()
    return Diagnostic("E100", "`**` is not an operator: a power is written `^`", span, fix=fixed)


def _keyword_taken_as_name(text: str, offset: int) -> tuple[int, str] | None:
    """The offset of a declaration keyword that starts a line just before `offset`, if an
    operator or `=` precedes it (so it cannot be a value named like a keyword)."""
    # Comments are blanked, not dropped, so offsets in `before` are offsets in `text`.
    before = re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text[:offset]).rstrip()
    line_start = before.rfind("\n") + 1
    match = re.compile(r"[ \t]*([A-Za-z_]+)").fullmatch(before, line_start)
    if not match or match.group(1) not in DECLARATION_KEYWORDS:
        return None
    keyword_offset = match.start(1)
    preceding = _previous_token(text, keyword_offset)
    if preceding in ("=", "(", ",", "+", "-", "*", "/", "^", "<", ">", "<=", ">=", "==", "!="):
        return keyword_offset, preceding
    return None


def _lines(text: str) -> list[str]:
    """The lines as Lark counts them (only `\n` ends one; `str.splitlines` knows more)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _end_position(text: str) -> tuple[int, int]:
    """Just after the last character that is not white space, as Lark counts lines."""
    lines = text.rstrip(" \t\f\r\n").split("\n")
    return len(lines), len(lines[-1]) + 1


# ---- Lark tree to AST --------------------------------------------------------


def _number(text: str) -> float:
    return float(text.replace("_", ""))


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Lark's tree to the AST, bottom-up with a stack of its own: a spec's expressions may
    nest thousands deep (`- - - x`, `a + b + …`), past Python's recursion limit."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _span(self, meta: object) -> Span:
        return Span(
            self.file,
            getattr(meta, "line", 1),
            getattr(meta, "column", 1),
            getattr(meta, "end_line", 1),
            getattr(meta, "end_column", 1),
        )

    def _tok(self, token: Token) -> Span:
        return Span(
            self.file,
            token.line or 1,
            token.column or 1,
            token.end_line or token.line or 1,
            token.end_column or (token.column or 1) + len(token),
        )

    # expressions
    def number(self, meta, children):
        (token,) = children
        is_int = not re.search(r"[.eE]", str(token))
        return ast.Number(_number(token), is_int, self._tok(token))

    def true(self, meta, children):
        return ast.Bool(True, self._span(meta))

    def false(self, meta, children):
        return ast.Bool(False, self._span(meta))

    def name(self, meta, children):
        (token,) = children
        return ast.Name(str(token), self._tok(token))

    def list(self, meta, children):
        return ast.ListExpr(tuple(c for c in children if c is not None), self._span(meta))

    def arg(self, meta, children):
        return children[0]

    def kwarg(self, meta, children):
        name, value = children
        return ast.Keyword(str(name), value, self._span(meta))

    def call(self, meta, children):
        func, *arguments = children
        arguments = [a for a in arguments if a is not None]
        args = tuple(a for a in arguments if not isinstance(a, ast.Keyword))
        kwargs = tuple(a for a in arguments if isinstance(a, ast.Keyword))
        return ast.Call(str(func), args, kwargs, self._span(meta), self._tok(func))

    def neg(self, meta, children):
        return ast.Unary("-", children[0], self._span(meta))

    def not_(self, meta, children):
        return ast.Unary("not", children[0], self._span(meta))

    def pow(self, meta, children):
        return ast.Binary("^", children[0], children[1], self._span(meta))

    def binary(self, meta, children):
        left, op, right = children
        return ast.Binary(str(op), left, right, self._span(meta))

    def compare(self, meta, children):
        return self.binary(meta, children)

    def and_(self, meta, children):
        return ast.Binary("and", children[0], children[1], self._span(meta))

    def or_(self, meta, children):
        return ast.Binary("or", children[0], children[1], self._span(meta))

    # declarations
    def bound(self, meta, children):
        sign, token = children
        if token.type == "NAME" and str(token) != "inf":
            value: float | str = str(token)
        else:
            value = float("inf") if str(token) == "inf" else _number(token)
        if sign is not None:
            if isinstance(value, str):
                value = "-" + value
            else:
                value = -value
        return ast.Bound(value, self._span(meta))

    def range(self, meta, children):
        opening, lo, hi, closing = children
        return ast.Range(lo, hi, str(opening) == "[", str(closing) == "]", self._span(meta))

    def dim(self, meta, children):
        (token,) = children
        value: str | int = int(str(token).replace("_", "")) if token.type == "INT" else str(token)
        return ast.Dim(value, self._tok(token))

    def dim_list(self, meta, children):
        return tuple(children)

    def choices(self, meta, children):
        return tuple(str(c)[1:-1] for c in children)

    def use_decl(self, meta, children):
        (token,) = children
        if token.type == "STRING":
            return ast.Use(str(token)[1:-1], True, self._span(meta))
        return ast.Use(str(token), False, self._span(meta))

    def input_decl(self, meta, children):
        name, dtype, dims, grad, _in, rng, default, _else, fallback = children
        return ast.InputDecl(
            str(name),
            str(dtype),
            dims or (),
            grad is not None,
            rng,
            default,
            self._span(meta),
            self._tok(name),
            self._tok(dtype),
            fallback,
        )

    def fallback(self, meta, children):
        sign, token = children
        is_int = not re.search(r"[.eE]", str(token))
        number = ast.Number(_number(token), is_int, self._tok(token))
        return ast.Unary("-", number, self._span(meta)) if sign is not None else number

    def param_decl(self, meta, children):
        name = children[0]
        if len(children) == 4 and isinstance(children[3], tuple):  # static choice
            _, choice, _in, options = children
            return ast.ParamDecl(
                str(name),
                None,
                None,
                str(choice)[1:-1],
                options,
                self._span(meta),
                self._tok(name),
            )
        value, learned, _in, rng = children[1], children[2], children[3], children[4]
        return ast.ParamDecl(
            str(name),
            value,
            rng,
            None,
            (),
            self._span(meta),
            self._tok(name),
            learned=learned is not None,
        )

    def state_decl(self, meta, children):
        name, init, _in, rng, _update, update = children
        return ast.StateDecl(str(name), init, rng, update, self._span(meta), self._tok(name))

    def def_decl(self, meta, children):
        name, *rest = children
        body = rest[-1]
        params = tuple(str(p) for p in rest[:-1] if p is not None)
        return ast.DefDecl(str(name), params, body, self._span(meta), self._tok(name))

    def _value(self, kind, meta, children):
        name, value = children
        return ast.ValueDecl(kind, str(name), value, self._span(meta), self._tok(name))

    def let_decl(self, meta, children):
        return self._value("let", meta, children)

    def term_decl(self, meta, children):
        return self._value("term", meta, children)

    def metric_decl(self, meta, children):
        return self._value("metric", meta, children)

    def minimize_decl(self, meta, children):
        return ast.Minimize(children[0], self._span(meta))

    def loss_header(self, meta, children):
        name, doc = children
        return (str(name), _docstring(doc), self._tok(name))

    def start(self, meta, children):
        (name, doc, name_span), *decls = children
        return ast.SpecAST(name, doc, tuple(decls), self.file, name_span)

    def decls(self, meta, children):
        return tuple(children)


def _docstring(token: Token | None) -> str | None:
    if token is None:
        return None
    return str(token)[3:-3].strip()
