"""The parser keeps every comment with its place (for `lossdsl fmt` and the editor)."""

from __future__ import annotations

import lossdsl
from lossdsl.diagnostics import Span
from lossdsl.syntax import ast


def test_comments_are_recorded_with_their_spans_in_order() -> None:
    spec = lossdsl.parse(
        'loss x  # header\n"""a # in the docstring"""\n# own line\n'
        "term t = f(a,  # inside\n  b)\r\n",
        "c.loss",
    )
    assert spec.comments == (
        ast.Comment("# header", Span("c.loss", 1, 9, 1, 17)),
        ast.Comment("# own line", Span("c.loss", 3, 1, 3, 11)),
        ast.Comment("# inside", Span("c.loss", 4, 16, 4, 24)),
    )


def test_each_parse_records_only_its_own_comments() -> None:
    first = lossdsl.parse("loss a  # one\n")
    second = lossdsl.parse("loss b\n")
    assert [c.text for c in first.comments] == ["# one"]
    assert second.comments == ()
