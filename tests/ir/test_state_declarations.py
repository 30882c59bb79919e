"""`state`, `ema` and `learned` in the front end: what they parse to, the IR they build, what
the analysis knows about them, and the errors they give (the broken specs themselves are
in tests/fixtures/errors, e201_… to e204_…)."""

from __future__ import annotations

import math

import pytest

import lossdsl
from lossdsl.analysis.intervals import Interval
from lossdsl.passes.analysis import Analysis
from lossdsl.passes.pipeline import check_text
from lossdsl.syntax import ast


def checked(body: str):
    result = check_text("loss example\n" + body)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert not errors, "\n".join(d.render() for d in errors)
    assert result.ir is not None
    return result


def codes(body: str) -> list[str]:
    return [d.code for d in check_text("loss example\n" + body).diagnostics]


# ---- syntax -----------------------------------------------------------------------------------


def test_a_state_declaration_has_a_start_a_range_and_an_update():
    (decl,) = lossdsl.parse("loss s\nstate beta = 0.1 in [1e-4, 10] update beta * 2").decls
    assert isinstance(decl, ast.StateDecl)
    assert decl.name == "beta"
    assert isinstance(decl.value, ast.Number) and decl.value.value == 0.1
    assert decl.range is not None and decl.range.hi.value == 10
    assert isinstance(decl.update, ast.Binary) and decl.update.op == "*"


def test_learned_marks_a_param_trainable():
    plain, learned = lossdsl.parse("loss s\nparam a = 1\nparam s = 0 learned in [-5, 5]").decls
    assert isinstance(plain, ast.ParamDecl) and not plain.learned
    assert isinstance(learned, ast.ParamDecl) and learned.learned
    assert learned.range is not None


def test_state_update_and_learned_are_keywords_only_where_the_grammar_expects_them():
    spec = lossdsl.parse(
        "loss s\ninput state : float[N] grad\nparam update = 1\nparam learned = 2 learned\n"
        "state s = update update learned + update\nterm t = mean(state) * s"
    )
    names = [getattr(d, "name", None) for d in spec.decls]
    assert names == ["state", "update", "learned", "s", "t"]


# ---- the IR ---------------------------------------------------------------------------------


def test_a_states_update_is_clamped_into_its_range_and_its_start_too():
    ir = checked(
        "param c = 3\ninput x : float[N] grad\nstate level = c in [0, 1] update level + 1\n"
        "term t = mean(x) * level"
    ).ir
    (state,) = ir.states
    assert ir.node(state.update).op == "clamp"
    assert ir.node(state.init_node).op == "clamp"  # a param's value may lie outside
    assert ir.node(state.node).op == "state"


def test_each_ema_keeps_two_states_named_after_its_declaration():
    ir = checked(
        "input x : float[N] grad\n"
        "term t = mean(x) / max(ema(detach(mean(x)), 0.9), 1) + ema(detach(mean(x)), 0.5)"
    ).ir
    assert [s.name for s in ir.states] == ["t.ema", "t.ema.calls", "t.ema2", "t.ema2.calls"]
    assert not any(s.reported for s in ir.states)
    assert [e.name for e in ir.emas] == ["t.ema", "t.ema2"]
    assert [ir.node(e.node).attrs["decay"] for e in ir.emas] == [0.9, 0.5]


def test_every_derived_input_variant_names_its_states_alike():
    text = (
        "loss example\ninput logp : float[B] grad in (-inf, 0] = gather(log_softmax(logits, "
        "dim=V), actions, dim=V)\ninput logits : float[B, V] grad\ninput actions : int[B] in "
        "[0, V)\nterm nll = -mean(logp)\nmetric avg = ema(detach(nll), 0.9)\n"
        "state calls = 0 update calls + 1\n"
    )
    passed = check_text(text, computed=frozenset()).ir
    computed = check_text(text, computed=frozenset({"logp"})).ir
    assert passed is not None and computed is not None
    assert [s.name for s in passed.states] == [s.name for s in computed.states]


def test_weights_may_read_learned_params_and_states_but_no_input():
    checked(
        "input x : float[N] grad\nparam s = 0 learned in [-5, 5]\nstate w = 1 update w\n"
        "term a = mean(square(x))\nterm r = s\nminimize w * exp(-s) * a + r"
    )
    assert codes("input x : float[N] grad\nterm a = mean(square(x))\nminimize mean(x) * a") == [
        "E203"
    ]


# ---- analysis ---------------------------------------------------------------------------------


def facts_of(body: str):
    ir = checked(body).ir
    return ir, Analysis(ir)


def test_a_state_with_a_range_lies_in_it():
    ir, facts = facts_of(
        "input x : float[N] grad\nstate level = 0.5 in [0, 1] update level * 3\n"
        "term t = mean(x) * level"
    )
    assert facts[ir.states[0].node].interval == Interval(0, 1, True, True)
    assert not facts[ir.states[0].node].live


def test_a_state_without_a_range_lies_where_its_start_and_update_take_it():
    ir, facts = facts_of(
        "input x : float[N] grad\nstate calls = 0 update calls + 1\n"
        "state frozen = 2 update frozen\nterm t = mean(x) * calls * frozen"
    )
    calls, frozen = (facts[s.node].interval for s in ir.states)
    assert calls == Interval(0, math.inf, True, False)  # counted up: 0, 1, 2, … (finite)
    assert frozen == Interval.point(2.0)


def test_an_ema_lies_where_its_argument_does():
    ir, facts = facts_of(
        "input p : float[N] grad in [0, 1]\nterm t = mean(p)\nmetric a = ema(detach(t), 0.9)"
    )
    (ema,) = ir.emas
    assert facts[ema.node].interval == Interval(0, 1, True, True)
    assert not facts[ema.node].live


def test_a_learned_param_is_analysed_as_a_grad_input_over_its_range():
    ir, facts = facts_of("input x : float[N]\nparam s = 0 learned in [-2, 3]\nterm t = s")
    (learned,) = ir.learned
    assert facts[learned.node].live
    assert facts[learned.node].interval == Interval(-2, 3, True, True)
    assert "W400" not in codes("input x : float[N]\nparam s = 0 learned in [-2, 3]\nterm t = s")


UNCERTAINTY = (
    "input a_pred : float[N] grad\ninput a_target : float[N]\ninput b_pred : float[M] grad\n"
    "input b_target : float[M]\nparam s_a = 0 learned\nparam s_b = 0 learned\n"
    "term a = mean(square(a_pred - a_target))\nterm b = mean(square(b_pred - b_target))\n"
    "term reg = s_a + s_b\n"
)


@pytest.mark.parametrize(
    "objective",
    [
        "exp(-s_a) * a + exp(-s_b) * b + reg",  # LANGUAGE.md's form
        "0.5 * exp(-s_a) * a + 0.5 * exp(-s_b) * b + 0.5 * reg",  # Kendall et al.'s halves
        "a / exp(s_a) + b / (2 * exp(s_b)) + reg",
    ],
)
def test_uncertainty_weighting_is_bounded_below_as_a_whole(objective):
    found = codes(UNCERTAINTY + f"minimize {objective}")
    assert "W402" not in found


@pytest.mark.parametrize(
    "objective, why",
    [
        ("exp(-s_a) * a + b + reg", "`s_b`"),  # nothing holds s_b → -inf
        ("exp(-s_a) * a + exp(-s_b) * b - reg", "`s_a`"),  # -s → -inf as s → +inf
        ("s_a * a + exp(-s_b) * b + reg", "term `a`"),  # s_a · a → -inf
    ],
)
def test_an_objective_a_learned_param_can_run_away_with_is_w402(objective, why):
    result = check_text("loss example\n" + UNCERTAINTY + f"minimize {objective}")
    w402 = [d for d in result.diagnostics if d.code == "W402"]
    assert w402, objective
    assert any(why in d.message for d in w402), [d.message for d in w402]


def test_a_term_unbounded_below_is_still_w402_beside_a_learned_weight():
    found = check_text(
        "loss example\n" + UNCERTAINTY + "input adv : float[N]\n"
        "term pg = -mean(a_pred * adv)\nminimize exp(-s_a) * a + exp(-s_b) * b + reg + pg"
    ).diagnostics
    assert [d.message.split()[1] for d in found if d.code == "W402"] == ["`pg`"]
