"""Diagnostics speak in the user's terms (issue 14, item 15): a stability rewrite turns
`exp(x) - 1` into `expm1(x)`, `y * log(p)` into `xlogy(y, p)`, `log(1 + z)` into
`log1p(z)`, but a warning about the result names what the user wrote, at the place they
wrote it, with a fix in their text, and one root cause gives one warning. The I500 notes
quote what each rewrite matched as the user wrote it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lossdsl.diagnostics import Diagnostic
from lossdsl.passes import check_text
from lossdsl.passes.rewrites import REWRITES, Call, Pattern

ROOT = Path(__file__).resolve().parents[2]
HAZARDS = ROOT / "tests" / "fixtures" / "hazards"
SPECS = sorted([*HAZARDS.glob("*.loss"), *ROOT.glob("specs/**/*.loss")])


def warnings_of(text: str) -> list[Diagnostic]:
    return [d for d in check_text(text, "spec.loss").diagnostics if d.severity == "warning"]


def fixture(stem: str) -> list[Diagnostic]:
    path = HAZARDS / f"{stem}.loss"
    return [d for d in check_text(path.read_text(), str(path)).diagnostics if d.code != "I500"]


def test_the_issues_clip_fraction_warns_once_about_the_users_exp() -> None:
    """`sum(abs(ratio - 1) > eps)` with `ratio = exp(lp - old)`: the overflow is the exp's."""
    text = (
        "loss clip\n"
        "input lp  : float[N] grad\n"
        "input old : float[N]\n"
        "param eps = 0.2\n"
        "let ratio = exp(lp - old)\n"
        "term t = mean(square(ratio))\n"
        "metric clip = sum(abs(ratio - 1) > eps)\n"
    )
    (w301,) = [d for d in warnings_of(text) if d.code == "W301"]
    assert (w301.span.line, w301.span.col, w301.span.end_col) == (5, 13, 26)
    assert w301.message.startswith("exp() can overflow float32")
    assert w301.fix == "exp(clamp(lp - old, max=20))"


def test_an_exp_the_rewrite_absorbed_is_still_named_and_placed_as_written() -> None:
    (w301,) = fixture("w301_expm1_only")
    assert w301.message.startswith("exp() can overflow float32")
    assert w301.fix == "exp(clamp(x, max=20))"
    assert (w301.span.col, w301.span.end_col) == (22, 28)  # `exp(x)`, not `exp(x) - 1`


def test_log_of_zero_inside_an_xlogy_is_the_users_log() -> None:
    (w300,) = fixture("w300_xlogy_after_rewrite")
    assert w300.message == "log of a value that can be 0: `p` lies in [0, 1]"
    assert w300.fix == "log(clamp(p, min=1e-8))"
    assert (w300.span.col, w300.span.end_col) == (22, 28)  # `log(p)`


def test_x_log_x_of_a_negative_value_names_the_log_and_the_domain_it_has_there() -> None:
    (w300,) = warnings_of(
        "loss xx\ninput q : float[N] grad in (-1, 1)\nterm t = mean(q * log(q))\n"
    )
    assert w300.message == "log() needs its argument `q` in [0, inf], but it lies in (-1, 1)"
    assert w300.fix == "log(clamp(q, min=1e-8))"


def test_a_rewrite_without_a_matching_user_op_says_what_it_is_computed_as() -> None:
    (w300,) = fixture("w300_log1p_after_rewrite")
    assert w300.message.startswith("`log(1 + z)` (computed as log1p(z)) needs its argument `z`")
    assert w300.fix == "log(1 + clamp(z, min=-1 + 1e-6))"  # the user's text, guarded


def test_an_exp_ratio_quotes_both_exps_and_the_difference_it_computes() -> None:
    (w301,) = [
        d
        for d in warnings_of(
            "loss er\ninput a : float[N] grad\ninput b : float[N]\nterm t = mean(exp(a) / exp(b))\n"
        )
        if d.code == "W301"
    ]
    assert w301.message.startswith("`exp(a) / exp(b)` (computed as exp(a - b)) can overflow")
    assert w301.fix == "exp(clamp(a - b, max=20))"


def made_by_rewrites() -> set[str]:
    """The ops a rewrite can put in the graph that its pattern did not have."""

    def ops(pattern: Pattern) -> set[str]:
        if not isinstance(pattern, Call):
            return set()
        return {pattern.op}.union(*(ops(a) for a in pattern.args))

    return set().union(*(ops(r.replace) - ops(r.match) for r in REWRITES))


def test_rewrites_make_ops_the_user_may_not_have_written() -> None:
    assert {"expm1", "xlogy", "xlogx", "log1p", "log_softmax", "logsumexp"} <= made_by_rewrites()


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_no_warning_quotes_an_op_the_spec_does_not_call(path: Path) -> None:
    text = path.read_text()
    code = re.sub(r"#[^\n]*", "", text)  # what the spec calls, not what its comments say
    for d in check_text(text, str(path), path.parent).diagnostics:
        if d.severity != "warning":
            continue
        for op in made_by_rewrites():
            said = re.search(rf"\b{op}\(", f"{d.message} {d.fix or ''}")
            allowed = re.search(rf"\b{op}\(", code) or f"computed as {op}(" in d.message
            assert not said or allowed, f"{d.code} at {d.span.line}: {d.message} / {d.fix}"


def test_rewrite_notes_quote_what_the_rewrite_matched_in_the_users_text() -> None:
    text = (
        "loss notes\n"
        "input lp  : float[N] grad\n"
        "input old : float[N]\n"
        "input p   : float[N] grad in (0, 1]\n"
        "input adv : float[N]\n"
        "let ratio = exp(clamp(lp - old, max=20))\n"
        "term t = mean(square(ratio - 1)) - mean(log(p) * adv)\n"
    )
    notes = sorted(d.message for d in check_text(text, "n.loss").diagnostics if d.code == "I500")
    assert notes == [
        "rewrote exp(clamp(lp - old, max=20)) - 1 as expm1(clamp(lp - old, max=20)) [expm1]",
        "rewrote log(p) * adv as xlogy(adv, p) [xlogy]",
    ]


def test_a_named_value_is_quoted_by_its_name() -> None:
    """`exp(u)` with `let u = a - b`: the fix guards `u`, as the user wrote it."""
    found = warnings_of(
        "loss named\ninput a : float[N] grad\ninput b : float[N]\nlet u = a - b\n"
        "let l = log(1 + u)\nterm t = mean(exp(u)) + mean(square(l))\n"
    )
    fixes = {d.code: d.fix for d in found}
    messages = {d.code: d.message for d in found}
    assert fixes["W301"] == "exp(clamp(u, max=20))"
    assert fixes["W300"] == "log(1 + clamp(u, min=-1 + 1e-6))"
    assert messages["W300"].startswith("`log(1 + u)` (computed as log1p(u)) needs its argument")
