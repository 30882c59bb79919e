"""The abstract syntax tree: small frozen dataclasses, each with the span it came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lossdsl.diagnostics import Span

# ---- expressions -------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float
    is_int: bool
    span: Span


@dataclass(frozen=True)
class Bool:
    value: bool
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class Keyword:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Expr
    span: Span


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / ^ < <= > >= == != and or
    left: Expr
    right: Expr
    span: Span


Expr = Number | Bool | Name | ListExpr | Call | Unary | Binary

# ---- declarations ------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    value: float | str  # a number (inf allowed) or a dim name
    span: Span


@dataclass(frozen=True)
class Range:
    lo: Bound
    hi: Bound
    lo_closed: bool
    hi_closed: bool
    span: Span


@dataclass(frozen=True)
class Dim:
    value: str | int  # a dim name, a literal size, or "..."
    span: Span


@dataclass(frozen=True)
class Use:
    target: str
    is_path: bool
    span: Span


@dataclass(frozen=True)
class InputDecl:
    name: str
    dtype: str
    dims: tuple[Dim, ...]
    grad: bool
    range: Range | None
    default: Expr | None
    span: Span
    name_span: Span
    dtype_span: Span
    fallback: Expr | None = None  # `= EXPR else NUMBER`: a derived input's value when no
    # input its expression needs is passed (a number, maybe negated)


@dataclass(frozen=True)
class ParamDecl:
    name: str
    value: Expr | None  # None for a static choice
    range: Range | None
    choice: str | None = None
    choices: tuple[str, ...] = ()
    span: Span = Span("<unknown>", 1, 1, 1, 1)
    name_span: Span = Span("<unknown>", 1, 1, 1, 1)
    learned: bool = False  # `param s = 0 learned`: a trainable scalar (an nn.Parameter)


@dataclass(frozen=True)
class StateDecl:
    """`state NAME = INIT [in RANGE] update EXPR`: a scalar the module keeps across calls."""

    name: str
    value: Expr  # INIT: numbers, params and `step`, read when the state starts (or restarts)
    range: Range | None
    update: Expr  # the value after a training-mode call, from that call's values
    span: Span
    name_span: Span


@dataclass(frozen=True)
class DefDecl:
    name: str
    params: tuple[str, ...]
    body: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class ValueDecl:
    """`let`, `term` and `metric`: a named expression."""

    kind: str  # "let" | "term" | "metric"
    name: str
    value: Expr
    span: Span
    name_span: Span


@dataclass(frozen=True)
class Minimize:
    objective: Expr
    span: Span


Decl = Use | InputDecl | ParamDecl | StateDecl | DefDecl | ValueDecl | Minimize


@dataclass(frozen=True)
class Comment:
    """A `# …` comment (its text from `#` on) where it stands, kept for `lossdsl fmt`."""

    text: str
    span: Span


@dataclass(frozen=True)
class SpecAST:
    name: str
    doc: str | None
    decls: tuple[Decl, ...]
    file: str
    name_span: Span
    comments: tuple[Comment, ...] = ()  # in the order of the text


# ---- walking expressions -------------------------------------------------------


def children(e: Expr) -> tuple[Expr, ...]:
    """The sub-expressions of `e`, in source order (a keyword argument's value for it)."""
    if isinstance(e, Unary):
        return (e.operand,)
    if isinstance(e, Binary):
        return (e.left, e.right)
    if isinstance(e, Call):
        return (*e.args, *(k.value for k in e.kwargs))
    if isinstance(e, ListExpr):
        return e.items
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """`e` and every expression inside it, parents before children, in source order;
    with a stack of its own, so any depth of nesting is fine."""
    stack = [e]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(children(current)))
