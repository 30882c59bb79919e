"""`fmt` on standard specs with their white space and comments shuffled: it always formats
them (never refuses, never changes them: format_text re-parses and compares), and the
result is a fixed point."""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossdsl.resources import stdlib_dir
from lossdsl.tools.fmt import format_text

TEXTS = [path.read_text() for path in sorted(stdlib_dir().rglob("*.loss"))]
TOKEN = re.compile(
    r'"""(?:.|\n)*?"""|"[^"\n]*"|#[^\n]*|\s+'
    r"|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?"  # a number, whole
    r"|\w+|\.\.\.|[<>=!]=|[^\s\"#]",
    re.S,
)
SPACES = [" ", "  ", "\t", "\n", "\n\n\n", "\n      ", "  # a comment\n", "\n# own line\n  "]
FUZZ = settings(
    max_examples=int(os.environ.get("LOSSDSL_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def reshuffled_spec(draw: st.DrawFn) -> str:
    """A standard spec with some of its white space replaced: runs of spaces, line breaks,
    blank lines, comments at the end of a line or on a line of their own."""
    text = draw(st.sampled_from(TEXTS))
    tokens = TOKEN.findall(text)
    assert "".join(tokens) == text
    out = []
    for index, token in enumerate(tokens):
        if token.isspace() and index and draw(st.integers(0, 3)) == 0:
            after_comment = tokens[index - 1].startswith("#")
            choices = [s for s in SPACES if "\n" in s] if after_comment else SPACES
            token = draw(st.sampled_from(choices))
        elif index and not tokens[index - 1].isspace() and draw(st.integers(0, 15)) == 0:
            # white space where there was none: `f (x)`, `a+\n b`, `[ 0 , 1 ]`
            token = draw(st.sampled_from(SPACES[:6])) + token
        out.append(token)
    return "".join(out)


@FUZZ
@given(reshuffled_spec())
def test_fmt_formats_any_layout_of_a_spec_to_a_fixed_point(text: str) -> None:
    once = format_text(text)
    assert format_text(once) == once
