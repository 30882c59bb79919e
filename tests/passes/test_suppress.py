"""`# lossdsl: allow CODE` comments and `suppress(…, allow=…)`: what they silence, and not."""

from __future__ import annotations

from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.passes import check_reference, check_text
from lossdsl.passes.suppress import allowed_by_line, parse_codes, suppress

TWO_LOGS = (
    "loss two\n"
    "input p : float[N] grad in [0, 1]\n"
    "input q : float[N] grad in [0, 1]\n"
    "term a = -mean(log(p)){a}\n"
    "term b = -mean(log(q)){b}\n"
)


def located(text: str) -> list[tuple[str, int]]:
    return [(d.code, d.span.line) for d in check_text(text, "two.loss").diagnostics]


def test_without_a_comment_both_lines_warn():
    assert located(TWO_LOGS.format(a="", b="")) == [("W300", 4), ("W300", 5)]


def test_an_allow_comment_silences_its_own_line_only():
    text = TWO_LOGS.format(a="  # lossdsl: allow W300", b="")
    assert located(text) == [("W300", 5)]


def test_an_allow_comment_silences_only_the_codes_it_names():
    text = TWO_LOGS.format(a="  # lossdsl: allow W301, W302", b="")
    assert located(text) == [("W300", 4), ("W300", 5)]


def test_codes_are_separated_by_commas_or_spaces_and_case_is_ignored():
    assert parse_codes(" W300, w301 I500,W302") == {"W300", "W301", "I500", "W302"}
    for comment in (
        "# lossdsl: allow W301 W300",
        "#lossdsl:allow w300",
        "# lossdsl: allow I500,W300",
    ):
        assert located(TWO_LOGS.format(a="  " + comment, b="")) == [("W300", 5)], comment


def test_an_allow_comment_after_another_comment_counts_and_other_comments_do_not():
    text = TWO_LOGS.format(a="  # clamp later  # lossdsl: allow W300", b="  # allow W300")
    assert located(text) == [("W300", 5)]
    assert allowed_by_line("let x = 1  # lossdsl: allow\n") == {}


def test_unknown_codes_in_a_comment_are_ignored():
    text = TWO_LOGS.format(a="  # lossdsl: allow W999, W300", b="  # lossdsl: allow X123")
    assert located(text) == [("W300", 5)]


def test_errors_are_never_silenced():
    text = "loss broken\ninput x : float[N] grad\nterm t = mena(square(x))  # lossdsl: allow E101\n"
    assert [d.code for d in check_text(text).diagnostics] == ["E101"]


def test_a_comment_silences_a_diagnostic_inside_a_used_specs_def(tmp_path):
    helper = tmp_path / "helper.loss"
    main = tmp_path / "main.loss"
    main.write_text(
        'loss main\nuse "helper.loss"\ninput p : float[N] grad in [0, 1]\n'
        "term t = -mean(safe_log(p))\n"
    )
    helper.write_text("loss helper\ndef safe_log(p) = log(p)\n")
    reported = check_reference(main).diagnostics
    assert [(d.code, d.span.file.endswith("helper.loss"), d.span.line) for d in reported] == [
        ("W300", True, 2)
    ]
    helper.write_text("loss helper\ndef safe_log(p) = log(p)  # lossdsl: allow W300\n")
    assert check_reference(main).diagnostics == []


def test_a_comment_in_the_using_spec_does_not_silence_the_used_specs_line(tmp_path):
    """The line is of the file the diagnostic is in: main.loss:2 is not helper.loss:2."""
    (tmp_path / "helper.loss").write_text("loss helper\ndef safe_log(p) = log(p)\n")
    main = tmp_path / "main.loss"
    main.write_text(
        'loss main\nuse "helper.loss"  # lossdsl: allow W300\n'
        "input p : float[N] grad in [0, 1]\nterm t = -mean(safe_log(p))\n"
    )
    assert [d.code for d in check_reference(main).diagnostics] == ["W300"]


def test_suppress_with_allow_silences_a_code_everywhere_but_not_errors():
    span = Span("a.loss", 3, 1, 3, 5)
    found = [
        Diagnostic("W300", "log of 0", span),
        Diagnostic("W301", "overflow", span),
        Diagnostic("I500", "rewrote", span),
        Diagnostic("E101", "unknown", span),
    ]
    kept = suppress(found, {}, allow=["W300,I500"])
    assert [d.code for d in kept] == ["W301", "E101"]
    assert [d.code for d in suppress(found, {}, allow=["W301", "E101"])] == [
        "W300",
        "I500",
        "E101",
    ]


def test_a_multi_line_diagnostic_is_silenced_by_the_line_it_starts_on():
    span = Span("a.loss", 2, 1, 4, 5)
    source = "loss a\nterm t = x  # lossdsl: allow W402\n  + y\n  + z  # lossdsl: allow W400\n"
    found = [Diagnostic("W402", "unbounded", span), Diagnostic("W400", "no grad", span)]
    assert [d.code for d in suppress(found, {"a.loss": source})] == ["W400"]
