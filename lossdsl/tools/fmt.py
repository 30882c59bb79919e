"""`lossdsl fmt`: the canonical layout of a spec, printed from its AST with its comments.

The layout, in rules (docs/tools.md shows them by example):
- one declaration per line, in the order written; blank lines between declarations are kept,
  several in a row become one; own-line comments keep their place;
- single spaces around binary operators (`^` too), after commas and after `:`; none inside
  brackets, none around a keyword argument's `=`; numbers as written; parentheses where
  precedence needs them and where the user wrote them;
- runs of declarations of one kind (no blank line or comment between) are aligned: the `=`
  of `let`/`term`/`metric`/`param`, and the `:`, the `grad` and the `in` of `input`;
- a line break the user put between two arguments, or before a binary operator, is kept (and
  no other): a continued argument lines up after its `(`, a continued operator under the
  first operand; a call whose keyword arguments each start a line (the `select` of a static
  choice) indents them by 4 and aligns their ` = `; a long `{…}` of choices wraps at 100;
- trailing comments keep their line; those of consecutive lines are aligned.

A comment inside a declaration stays at the end of the line that holds the code before it,
or, on its own line, above the code after it. Declarations and expressions this printer does
not know are printed as written. Every result is parsed again and compared with the input,
node by node and comment by comment: `fmt` never changes what a spec means.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossdsl.diagnostics import LossSpecError, Span
from lossdsl.output_files import write_atomically
from lossdsl.spec_files import SPEC_SUFFIX, Reference, SpecFileError, read_spec_file
from lossdsl.syntax import ast
from lossdsl.syntax.parser import parse

CHOICES_WIDTH = 100  # where a long `{…}` of choices wraps
ALIGNED_KINDS = ("input", "param", "state", "let", "term", "metric")

# Precedence, loosest first, as in grammar/loss.lark.
OR, AND, NOT, COMPARE, ADD, MUL, UNARY, POWER, ATOM = range(1, 10)
_BINARY = {"or": OR, "and": AND, "+": ADD, "-": ADD, "*": MUL, "/": MUL, "^": POWER}
_COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


class FormatError(Exception):
    """`fmt` could not print a spec without changing it: the file is left as it is."""


def format_text(text: str, file: str = "<string>") -> str:
    """The canonical layout of a spec's text; raises `LossSpecError` on syntax errors and
    `FormatError` when the layout would change the spec (never silently)."""
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    spec = parse(text, file)
    formatted = _Printer(spec, text).run()
    _check_unchanged(spec, formatted, file)
    return formatted


# ---- where things are in the source --------------------------------------------------


Position = tuple[int, int]  # (line, col), from 1


def start(span: Span) -> Position:
    return (span.line, span.col)


def end(span: Span) -> Position:
    return (span.end_line, span.end_col)


class _Source:
    """Offsets and the characters around a node, skipping white space and comments."""

    def __init__(self, text: str, comments: tuple[ast.Comment, ...]):
        self.text = text
        self.line_starts = [0]
        for index, char in enumerate(text):
            if char == "\n":
                self.line_starts.append(index + 1)
        self.comment_ranges = sorted(
            (self.offset(start(c.span)), self.offset(end(c.span))) for c in comments
        )

    def offset(self, position: Position) -> int:
        line, col = position
        return self.line_starts[min(line, len(self.line_starts)) - 1] + col - 1

    def _in_comment(self, offset: int) -> tuple[int, int] | None:
        index = bisect.bisect_right(self.comment_ranges, (offset, len(self.text) + 1)) - 1
        if index >= 0:
            first, last = self.comment_ranges[index]
            if first <= offset < last:
                return first, last
        return None

    def before(self, offset: int) -> int:
        """The offset of the last character before `offset` that is code (-1: none)."""
        at = offset - 1
        while at >= 0:
            inside = self._in_comment(at)
            if inside is not None:
                at = inside[0] - 1
            elif self.text[at].isspace():
                at -= 1
            else:
                return at
        return -1

    def after(self, offset: int) -> int:
        """The offset of the first character from `offset` on that is code (len: none)."""
        at = offset
        while at < len(self.text):
            inside = self._in_comment(at)
            if inside is not None:
                at = inside[1]
            elif self.text[at].isspace():
                at += 1
            else:
                return at
        return len(self.text)

    def char(self, offset: int) -> str:
        return self.text[offset] if 0 <= offset < len(self.text) else ""

    def grouped(self, span: Span) -> bool:
        """Whether the user wrote the expression at `span` in parentheses of its own: a `(`
        right before it that is no call's, and a `)` right after it. The `(` and the `)`
        match, since what lies between them is one whole expression."""
        opening = self.before(self.offset(start(span)))
        if self.char(opening) != "(" or self.char(self.after(self.offset(end(span)))) != ")":
            return False
        word_end = self.before(opening)
        word_start = word_end
        while word_start > 0 and (
            self.text[word_start - 1].isalnum() or self.text[word_start - 1] == "_"
        ):
            word_start -= 1
        word = self.text[word_start : word_end + 1]
        is_call = bool(word) and (word[-1].isalnum() or word[-1] == "_")
        return not is_call or word in ("and", "or", "not")

    def slice(self, span: Span) -> str:
        return self.text[self.offset(start(span)) : self.offset(end(span))]

    def strings(self, span: Span) -> list[Span]:
        """Where the string literals inside `span` stand (a static choice's value and its
        choices, which the AST keeps without places), comments skipped."""
        first, last = self.offset(start(span)), self.offset(end(span))
        found = []
        for match in re.finditer(r'"[^"\n]*"', self.text[first:last]):
            at = first + match.start()
            if self._in_comment(at) is None:
                (line, col) = self.position(at)
                found.append(Span(span.file, line, col, line, col + len(match.group())))
        return found

    def code(self, span: Span) -> str:
        """The text at `span` without its comments (they are placed on their own)."""
        first, last = self.offset(start(span)), self.offset(end(span))
        kept, at = [], first
        for comment_first, comment_last in self.comment_ranges:
            if first <= comment_first < last:
                kept.append(self.text[at:comment_first])
                at = comment_last
        kept.append(self.text[at:last])
        return "".join(kept)

    def docstring_end(self, name_span: Span) -> Position | None:
        """Where the docstring after the `loss` line ends (None: there is none)."""
        at = self.after(self.offset(end(name_span)))
        if not self.text.startswith('"""', at):
            return None
        closing = self.text.find('"""', at + 3)
        return self.position(closing + 3) if closing >= 0 else None

    def position(self, offset: int) -> Position:
        line = bisect.bisect_right(self.line_starts, offset)
        return (line, offset - self.line_starts[line - 1] + 1)

    def own_line(self, comment: ast.Comment) -> bool:
        first = self.line_starts[comment.span.line - 1]
        return not self.text[first : self.offset(start(comment.span))].strip()


# ---- lines being written ----------------------------------------------------------------


@dataclass
class _Lines:
    """The lines of one declaration, and where each of its tokens came from."""

    lines: list[str] = field(default_factory=lambda: [""])
    indents: list[int] = field(default_factory=lambda: [0])
    tokens: list[tuple[Position, int]] = field(default_factory=list)  # (source, line index)

    @property
    def col(self) -> int:
        return len(self.lines[-1])

    @property
    def indent(self) -> int:
        return self.indents[-1]

    def write(self, text: str, at: Span | None = None) -> None:
        if at is not None:
            self.tokens.append((start(at), len(self.lines) - 1))
        self.lines[-1] += text

    def newline(self, col: int) -> None:
        self.lines.append(" " * col)
        self.indents.append(col)


# ---- the printer ----------------------------------------------------------------------------


@dataclass
class _Item:
    """A top-level piece of the output: the header, the docstring, a declaration or an
    own-line comment, with the lines it prints and the comments attached to it."""

    first: Position
    last: Position
    kind: str  # "header" | "doc" | "comment" | a declaration kind
    decl: Any = None
    lines: list[str] = field(default_factory=list)
    trailing: dict[int, str] = field(default_factory=dict)  # line index -> comment
    above: dict[int, list[str]] = field(default_factory=dict)  # line index -> own-line comments
    below: list[str] = field(default_factory=list)  # own-line comments after the last line
    tokens: list[tuple[Position, int]] = field(default_factory=list)


def _decl_kind(decl: Any) -> str:
    if isinstance(decl, ast.ValueDecl):
        return decl.kind
    return {
        ast.InputDecl: "input",
        ast.ParamDecl: "param",
        ast.StateDecl: "state",
        ast.DefDecl: "def",
        ast.Use: "use",
        ast.Minimize: "minimize",
    }.get(type(decl), "other")


class _Printer:
    def __init__(self, spec: ast.SpecAST, text: str):
        self.spec = spec
        self.source = _Source(text, spec.comments)

    # -- the whole file --

    def run(self) -> str:
        items = self.items()
        self.attach_comments(items)
        # Where lines break does not depend on the alignment padding, so the comments can be
        # placed on the unpadded layout, and the alignment can see where they went.
        for item in items:
            if item.kind not in ("comment", "header", "doc"):
                lines = self.layout(item.decl)
                item.lines, item.tokens = lines.lines, lines.tokens
        self.place_inner_comments(items)
        widths = self.alignment(items)
        for item in items:
            if id(item) in widths:
                padded = self.layout(item.decl, widths[id(item)])
                assert len(padded.lines) == len(item.lines)
                item.lines = padded.lines
        return self.assemble(items)

    def items(self) -> list[_Item]:
        spec = self.spec
        header = _Item(
            (spec.name_span.line, 1), end(spec.name_span), "header", lines=[f"loss {spec.name}"]
        )
        # The header starts at `loss`, which may follow comments on earlier lines.
        header.first = self.source.position(self.source.after(0))
        items = [header]
        doc_end = self.source.docstring_end(spec.name_span)
        if spec.doc is not None and doc_end is not None:
            doc_start = self.source.position(self.source.after(self.source.offset(header.last)))
            items.append(_Item(doc_start, doc_end, "doc", lines=_docstring(spec.doc)))
        for decl in spec.decls:
            items.append(_Item(start(decl.span), end(decl.span), _decl_kind(decl), decl))
        for comment in spec.comments:
            if self.source.own_line(comment) and not self.inside(items, comment):
                items.append(
                    _Item(
                        start(comment.span),
                        end(comment.span),
                        "comment",
                        lines=[comment.text.rstrip()],
                    )
                )
        return sorted(items, key=lambda item: item.first)

    @staticmethod
    def inside(items: list[_Item], comment: ast.Comment) -> _Item | None:
        where = start(comment.span)
        for item in items:
            if item.kind != "comment" and item.first <= where <= item.last:
                return item
        return None

    def attach_comments(self, items: list[_Item]) -> None:
        """Each comment not on a line of its own outside the items goes with one item: the
        one it lies in, or the one that ends on its line before it."""
        self.inner: dict[int, list[ast.Comment]] = {}
        for comment in self.spec.comments:
            owner = self.inside(items, comment)
            if owner is None and not self.source.own_line(comment):
                where = start(comment.span)
                before = [i for i in items if i.kind != "comment" and i.last <= where]
                owner = max(before, key=lambda i: i.last) if before else items[0]
            if owner is not None and not (
                owner.kind == "other" and owner.first <= start(comment.span) <= owner.last
            ):
                # (a declaration printed as written keeps the comments inside it in place)
                self.inner.setdefault(id(owner), []).append(comment)

    def place_inner_comments(self, items: list[_Item]) -> None:
        """Each comment of an item in a slot: on a line of its own above an output line, at
        the end of one, or below the item. Slots follow the comments' order in the text:
        a comment whose natural slot is taken or lies before the previous comment's moves on
        to the next free one."""
        for item in items:
            last = (0, 0)  # (line, 0 above | 1 at the end | 2 below)
            for comment in self.inner.get(id(item), []):
                where = start(comment.span)
                if self.source.own_line(comment) and item.tokens:
                    later = [line for at, line in item.tokens if at > where]
                    natural = (min(later) if later else len(item.lines) - 1, 0)
                else:
                    natural = (self.line_of(item, where), 1)
                slot = max(natural, last)
                if slot[1] == 1 and slot[0] in item.trailing:
                    following = slot[0] + 1
                    slot = (following, 0) if following < len(item.lines) else (slot[0], 2)
                line, kind = slot
                if kind == 0:
                    item.above.setdefault(line, []).append(comment.text.rstrip())
                elif kind == 1:
                    item.trailing[line] = comment.text.rstrip()
                else:
                    item.below.append(comment.text.rstrip())
                last = slot

    @staticmethod
    def line_of(item: _Item, where: Position) -> int:
        """The output line holding the last token written before `where` on its source
        line, else the last token before it at all."""
        if not item.tokens:
            return len(item.lines) - 1
        before = [(at, line) for at, line in item.tokens if at < where]
        same_line = [(at, line) for at, line in before if at[0] == where[0]]
        chosen = same_line or before
        return max(chosen)[1] if chosen else 0

    def assemble(self, items: list[_Item]) -> str:
        out: list[tuple[str, str | None]] = []  # (code, trailing comment)
        previous: _Item | None = None
        for item in items:
            if previous is not None and item.first[0] - previous.last[0] > 1:
                out.append(("", None))  # only blank lines lie between two items
            for index, line in enumerate(item.lines):
                for comment in item.above.get(index, []):
                    indent = len(line) - len(line.lstrip(" ")) if index else 0
                    out.append((" " * indent + comment, None))
                out.append((line.rstrip(), item.trailing.get(index)))
            out += [(comment, None) for comment in item.below]
            previous = item
        return _with_aligned_comments(out)

    # -- alignment --

    def alignment(self, items: list[_Item]) -> dict[int, list[int]]:
        """Per declaration item, the widths its aligned cells are padded to. A group is a run
        of declarations of one kind on consecutive lines; those that take several lines are
        part of it but are not padded, and do not widen it."""
        widths: dict[int, list[int]] = {}
        group: list[_Item] = []

        def close() -> None:
            single = [item for item in group if len(self.layout(item.decl).lines) == 1]
            cells = [self.cells(item.decl) for item in single]
            if cells:
                columns = max(len(c) for c in cells)
                width = [
                    max((len(c[i]) for c in cells if i < len(c)), default=0) for i in range(columns)
                ]
                for item in single:
                    widths[id(item)] = width
            group.clear()

        for item in items:
            joins = (
                bool(group)
                and item.kind == group[-1].kind
                and item.first[0] - group[-1].last[0] <= 1  # no blank line between
                and not group[-1].below
                and not item.above.get(0)  # a comment line between them in the output
            )
            if not joins:
                close()
            if item.kind in ALIGNED_KINDS:
                group.append(item)
        close()
        return widths

    def cells(self, decl: Any) -> list[str]:
        """The aligned cells of a declaration's first line."""
        if isinstance(decl, ast.InputDecl):
            return [
                f"input {decl.name}",
                f": {decl.dtype}[{', '.join(self.dim(d) for d in decl.dims)}]",
                "grad" if decl.grad else "",
                f"in {self.range(decl.range)}" if decl.range is not None else "",
            ]
        if isinstance(decl, ast.ParamDecl):
            return [f"param {decl.name}"]
        if isinstance(decl, ast.StateDecl):
            return [f"state {decl.name}"]
        if isinstance(decl, ast.ValueDecl):
            return [f"{decl.kind} {decl.name}"]
        return []

    # -- declarations --

    def layout(self, decl: Any, widths: list[int] | None = None) -> _Lines:
        out = _Lines()
        self.declaration(decl, out, widths)
        return out

    def declaration(self, decl: Any, out: _Lines, widths: list[int] | None) -> None:
        out.write("", decl.span)
        if isinstance(decl, ast.InputDecl):
            self.input(decl, out, widths)
        elif isinstance(decl, ast.ParamDecl):
            head = f"param {decl.name}"
            self.named(decl, head, decl.value, out, widths)
            if decl.value is None:
                strings = self.source.strings(decl.span)
                out.write(" ")
                out.write(f'"{decl.choice}"', strings[0] if strings else None)
                out.write(" in ")
                padding = (widths[0] - len(head)) if widths else 0
                self.choices(decl.choices, out, padding, strings[1:])
            else:
                self.value(decl.value, out)
                if decl.learned:
                    out.write(" learned")
                if decl.range is not None:
                    out.write(f" in {self.range(decl.range)}")
        elif isinstance(decl, ast.StateDecl):
            self.named(decl, f"state {decl.name}", decl.value, out, widths)
            self.value(decl.value, out)
            if decl.range is not None:
                out.write(f" in {self.range(decl.range)}")
            self.update(decl, out)
        elif isinstance(decl, ast.ValueDecl):
            self.named(decl, f"{decl.kind} {decl.name}", decl.value, out, widths)
            self.value(decl.value, out)
        elif isinstance(decl, ast.DefDecl):
            out.write(f"def {decl.name}({', '.join(decl.params)}) =", decl.name_span)
            self.value(decl.body, out)
        elif isinstance(decl, ast.Use):
            out.write(f'use "{decl.target}"' if decl.is_path else f"use {decl.target}")
        elif isinstance(decl, ast.Minimize):
            out.write("minimize")
            self.value(decl.objective, out)
        else:  # a declaration this printer does not know yet: as written
            self.verbatim(decl.span, out)

    def named(
        self, decl: Any, head: str, value: Any, out: _Lines, widths: list[int] | None
    ) -> None:
        """`KIND NAME =`, padded to its group's width unless the value starts a new line."""
        width = widths[0] if widths else len(head)
        out.write(head.ljust(width) + " =", decl.name_span)

    def value_on_next_line(self, e: Any) -> bool:
        """Whether the user started the expression on a line after its `=`."""
        if e is None:
            return False
        equals = self.source.before(self.source.offset(start(e.span)))
        return self.source.position(max(equals, 0))[0] < e.span.line

    def value(self, e: Any, out: _Lines) -> None:
        """The expression after `=` (or `minimize`): on the same line, or, where the user
        broke the line there, on the next one, indented by 4."""
        if self.value_on_next_line(e):
            out.newline(4)
        else:
            out.write(" ")
        self.expression(e, out)

    def update(self, decl: ast.StateDecl, out: _Lines) -> None:
        """` update EXPR`; on a line of its own (indented by 4) where the user put it on a
        line after the state's start and range."""
        keyword_end = self.source.before(self.source.offset(start(decl.update.span)))
        line, col = self.source.position(keyword_end - len("update") + 1)
        keyword = Span(decl.span.file, line, col, line, col + len("update"))
        before = decl.range.span if decl.range is not None else decl.value.span
        if line > before.end_line:
            out.newline(4)
            out.write("update", keyword)
        else:
            out.write(" ")
            out.write("update", keyword)
        self.value(decl.update, out)

    def input(self, decl: ast.InputDecl, out: _Lines, widths: list[int] | None) -> None:
        cells = self.cells(decl)
        widths = widths or [len(c) for c in cells]
        last = max((i for i, c in enumerate(cells) if c), default=0)
        padded = [c.ljust(widths[i]) if i < last else c for i, c in enumerate(cells)]
        # An empty column is kept (as spaces) only where a later one on this line needs it.
        text = " ".join(p for i, p in enumerate(padded) if i <= last and (widths[i] or p))
        out.write(text, decl.name_span)
        for dim in decl.dims:
            out.tokens.append((start(dim.span), 0))
        if decl.default is not None:
            out.write(" =")
            self.value(decl.default, out)
        if decl.fallback is not None:
            out.write(" else ")
            self.expression(decl.fallback, out)

    def choices(
        self,
        choices: tuple[str, ...],
        out: _Lines,
        padding: int = 0,
        spans: list[Span] | None = None,
    ) -> None:
        """`{"a", "b", …}`, wrapped where the unpadded line would pass the width (so that
        the alignment padding never changes where the lines break)."""
        out.write("{")
        anchor = out.col
        for index, choice in enumerate(choices):
            piece = f'"{choice}"' + ("}" if index == len(choices) - 1 else ",")
            if index:
                if out.col - padding + 1 + len(piece) > CHOICES_WIDTH:
                    out.newline(anchor)
                else:
                    out.write(" ")
            out.write(piece, spans[index] if spans and index < len(spans) else None)

    def range(self, rng: ast.Range) -> str:
        return (
            f"{'[' if rng.lo_closed else '('}{self.bound(rng.lo)}, "
            f"{self.bound(rng.hi)}{']' if rng.hi_closed else ')'}"
        )

    def bound(self, bound: ast.Bound) -> str:
        return "".join(self.source.slice(bound.span).split())

    def dim(self, dim: ast.Dim) -> str:
        return "..." if dim.value == "..." else self.source.slice(dim.span)

    def verbatim(self, span: Span, out: _Lines) -> None:
        lines = self.source.slice(span).split("\n")
        out.write(lines[0], span)
        for line in lines[1:]:
            out.lines.append(line.rstrip())
            out.indents.append(len(line) - len(line.lstrip(" ")))

    # -- expressions --

    def expression(self, e: Any, out: _Lines, context: int = 0) -> None:
        """Write `e` where an expression of precedence `context` or tighter is expected."""
        own = _precedence(e)
        if own < context or (own == context and context in (COMPARE,)) or self.grouped(e):
            out.write("(")
            self.bare(e, out)
            out.write(")")
        else:
            self.bare(e, out)

    def grouped(self, e: Any) -> bool:
        span = getattr(e, "span", None)
        return span is not None and self.source.grouped(span)

    def bare(self, e: Any, out: _Lines) -> None:
        if isinstance(e, ast.Number):
            out.write(self.source.slice(e.span), e.span)
        elif isinstance(e, ast.Bool):
            out.write("true" if e.value else "false", e.span)
        elif isinstance(e, ast.Name):
            out.write(e.id, e.span)
        elif isinstance(e, ast.Unary):
            out.write("-" if e.op == "-" else "not ", e.span)
            self.expression(e.operand, out, UNARY if e.op == "-" else NOT)
        elif isinstance(e, ast.Binary):
            self.binary(e, out)
        elif isinstance(e, ast.Call):
            out.write(f"{e.func}(", e.func_span)
            self.arguments([*e.args, *e.kwargs], out, e.func_span.end_line)
            out.write(")")
        elif isinstance(e, ast.ListExpr):
            out.write("[", e.span)
            self.arguments(list(e.items), out, e.span.line)
            out.write("]")
        else:  # an expression this printer does not know yet: as written, on one line
            out.write(" ".join(self.source.code(e.span).split()), e.span)

    def binary(self, e: ast.Binary, out: _Lines) -> None:
        level = _precedence(e)
        # Left-associative levels take their own level on the left, a tighter one on the
        # right; `^` the other way round (its base is an atom); comparisons do not chain.
        if e.op == "^":
            left, right = ATOM, UNARY
        elif level == COMPARE:
            left, right = ADD, ADD
        else:
            left, right = level, level + 1
        first = out.col
        self.expression(e.left, out, left)
        if e.right.span.line > e.left.span.end_line:
            out.newline(first)
        else:
            out.write(" ")
        out.write(f"{e.op} ")
        self.expression(e.right, out, right)

    def arguments(self, arguments: list[Any], out: _Lines, opening_line: int) -> None:
        """Arguments or list items, with the user's line breaks between them."""
        if not arguments:
            return
        broke = [
            a.span.line > b.span.end_line for b, a in zip(arguments, arguments[1:], strict=False)
        ]
        after_opening = arguments[0].span.line > opening_line
        keywords = [i for i, a in enumerate(arguments) if isinstance(a, ast.Keyword)]
        # `select(agg,\n    a = …,\n    b = …)`: keyword arguments, each on a line of its own.
        vertical = len(keywords) > 1 and all(i > 0 and broke[i - 1] for i in keywords)
        hanging = after_opening or vertical
        anchor = out.indent + 4 if hanging else out.col
        pad = max((len(arguments[i].name) for i in keywords), default=0) if vertical else 0
        if after_opening:
            out.newline(anchor)
        for index, argument in enumerate(arguments):
            if index:
                out.write(",")
                if broke[index - 1]:
                    out.newline(anchor)
                else:
                    out.write(" ")
            if isinstance(argument, ast.Keyword):
                spaced = vertical
                name = argument.name.ljust(pad) + " = " if spaced else argument.name + "="
                out.write(name, argument.span)
                self.expression(argument.value, out)
            else:
                self.expression(argument, out)


def _precedence(e: Any) -> int:
    if isinstance(e, ast.Binary):
        return COMPARE if e.op in _COMPARISONS else _BINARY[e.op]
    if isinstance(e, ast.Unary):
        return UNARY if e.op == "-" else NOT
    return ATOM


def _docstring(doc: str) -> list[str]:
    if "\n" in doc or doc.endswith('"'):
        return f'"""{doc}\n"""'.split("\n")
    return [f'"""{doc}"""']


def _with_aligned_comments(lines: list[tuple[str, str | None]]) -> str:
    """The lines, the trailing comments of each paragraph (lines between blank lines) in one
    column: two spaces after the longest code line of the paragraph that has a comment."""
    result: list[str] = []
    index = 0
    while index < len(lines):
        paragraph_end = index
        while paragraph_end < len(lines) and lines[paragraph_end][0].strip():
            paragraph_end += 1
        paragraph = lines[index : max(paragraph_end, index + 1)]
        commented = [code for code, comment in paragraph if comment is not None]
        column = max((len(code) for code in commented), default=0) + 2
        for code, comment in paragraph:
            result.append(code if comment is None else f"{code.ljust(column)}{comment}")
        index += len(paragraph)
    return "\n".join(result).rstrip("\n") + "\n"


# ---- the check that nothing changed --------------------------------------------------------


def syntax_shape(value: Any) -> Any:
    """An AST as plain data without positions and comments: two texts with the same shape
    mean the same spec."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            tuple(
                (f.name, syntax_shape(getattr(value, f.name)))
                for f in dataclasses.fields(value)
                if f.name not in ("comments", "file")
                and not isinstance(getattr(value, f.name), Span)
            ),
        )
    if isinstance(value, tuple | list):
        return tuple(syntax_shape(v) for v in value)
    return value


def _check_unchanged(spec: ast.SpecAST, formatted: str, file: str) -> None:
    try:
        again = parse(formatted, file)
    except Exception as error:  # noqa: BLE001 - any failure here is fmt's own bug
        raise FormatError(f"{file}: fmt would write a spec that does not parse: {error}") from None
    if syntax_shape(again) != syntax_shape(spec):
        raise FormatError(f"{file}: fmt would change the spec's meaning; left as it is")
    # (trailing white space is not part of what a comment says)
    if [c.text.rstrip() for c in again.comments] != [c.text.rstrip() for c in spec.comments]:
        raise FormatError(f"{file}: fmt would lose or reorder comments; left as it is")


# ---- files ------------------------------------------------------------------------------------


@dataclass
class FileResult:
    path: Path
    changed: bool = False
    error: str | None = None  # rendered diagnostics or the reason it was left alone


def spec_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, with every `.loss` file below each folder named, in order."""
    found: list[Path] = []
    for path in paths:
        found += sorted(path.rglob(f"*{SPEC_SUFFIX}")) if path.is_dir() else [path]
    return found


def format_files(paths: Iterable[Path], write: bool = True) -> list[FileResult]:
    """Format each spec file in place (`write=False`: only say which would change). A file
    with syntax errors, or one fmt cannot print unchanged, is reported and left alone."""
    results = []
    for path in spec_files(paths):
        result = FileResult(path)
        results.append(result)
        try:
            spec = read_spec_file(path, Reference(str(path), Path.cwd()))
            formatted = format_text(spec.text, str(path))
        except SpecFileError as error:
            result.error = str(error)
            continue
        except LossSpecError as error:
            result.error = error.render()
            continue
        except FormatError as error:
            result.error = str(error)
            continue
        result.changed = formatted != spec.text
        if result.changed and write:
            target = spec.resolved  # through a link: the file it leads to, the link kept
            write_atomically(target, _writer(formatted))
    return results


def _writer(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    return write


def format_stdin(check: bool) -> int:
    """`lossdsl fmt -`: the spec on standard input, formatted, on standard output (for
    editors); the exit status as for files."""
    import sys

    text = sys.stdin.read()
    try:
        formatted = format_text(text, "<stdin>")
    except LossSpecError as error:
        print(error.render(), file=sys.stderr)
        return 2
    except FormatError as error:
        print(error, file=sys.stderr)
        return 2
    if check:
        return 1 if formatted != text else 0
    sys.stdout.write(formatted)
    return 0
