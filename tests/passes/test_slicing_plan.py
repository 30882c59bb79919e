"""The slicing plan: which dims hold rows, what adds up across slices, one pass or two, E205."""

from __future__ import annotations

import textwrap

import pytest

from lossdsl.api import build_ir
from lossdsl.passes import check_text
from lossdsl.passes.slicing import means_as_sums, plan_slices


def plan_of(text: str):
    ir = check_text(textwrap.dedent(text).lstrip()).raise_for_errors()
    return plan_slices(means_as_sums(ir))


HEAD = """
    loss head
    input hidden : float[N, H] grad
    input head   : float[V, H] grad
    input target : int[N] in [0, V)
    term ce = mean(-gather(log_softmax(matmul(hidden, head, dim=H), dim=V), target, dim=V))
"""


def test_a_linear_head_is_sliced_along_its_rows_and_the_head_is_read_whole() -> None:
    plan, problems = plan_of(HEAD)
    assert not problems
    assert plan.split == ("N",)
    assert plan.wide == ("H",)
    assert plan.sliced_inputs == ("hidden",)  # the head has no row dim: every slice reads it
    (level,) = plan.levels
    assert level.ok and level.one_pass
    assert [a.combine for a in level.accumulators] == ["sum"]  # the mean became a sum


def test_ppo_slices_sequences_then_tokens_in_one_pass() -> None:
    plan, problems = plan_slices(means_as_sums(build_ir("ppo")))
    assert not problems
    assert plan.split == ("B", "T") and plan.wide == ("V",)
    assert [level.partial for level in plan.levels] == [("B",), ("B", "T")]
    assert all(level.ok and level.one_pass for level in plan.levels)
    combines = {a.combine for a in plan.levels[1].accumulators}
    assert combines == {"sum", "max", "min"}  # ratio_max / ratio_min are metrics


@pytest.mark.parametrize("name", ["cross_entropy", "nll", "sft_nll", "distill_kl"])
def test_the_vocabulary_losses_of_the_standard_library_slice_in_one_pass(name: str) -> None:
    plan, problems = plan_slices(means_as_sums(build_ir(name)))
    assert not problems, problems
    assert all(level.ok and level.one_pass for level in plan.levels)


DPO_FROM_LOGITS = """
    loss pairs
    input chosen : float[B, T, V] grad
    input tokens : int[B, T] in [0, V)
    input mask   : bool[B, T]
    let seq = sum(gather(log_softmax(chosen, dim=V), tokens, dim=V), dim=T, where=mask)
    term dpo = mean(-logsigmoid(seq))
"""


def test_a_nonlinear_function_of_per_sequence_sums_needs_two_passes_only_when_tokens_are_cut():
    plan, problems = plan_of(DPO_FROM_LOGITS)
    assert not problems
    whole_sequences, tokens = plan.levels
    assert whole_sequences.one_pass  # logsigmoid runs per slice, the mean over B adds up
    assert tokens.ok and not tokens.one_pass  # the sum over T must be complete first


def test_a_per_token_value_read_after_a_sum_over_tokens_is_collected() -> None:
    plan, problems = plan_of(
        """
        loss normalised
        input logits : float[B, T, V] grad
        let h = entropy(logits, dim=V)
        term t = mean(h / sum(h, dim=T, keepdim=true))
        """
    )
    assert not problems
    tokens = plan.levels[1]
    assert tokens.ok and not tokens.one_pass
    assert "collect" in {a.combine for a in tokens.accumulators}  # h is [B, T]: small


def test_logits_read_after_a_sum_over_tokens_keep_slices_to_whole_sequences() -> None:
    plan, problems = plan_of(
        """
        loss centred
        input logits : float[B, T, V] grad
        term t = mean(log_softmax(logits - mean(logits, dim=T, keepdim=true), dim=V))
        """
    )
    assert not problems
    whole_sequences, tokens = plan.levels
    assert whole_sequences.ok
    assert not tokens.ok and tokens.problem.code == "E205"
    assert "keeps the dim V" in tokens.problem.message
    assert plan.finest_ok(1) is whole_sequences


def test_a_softmax_over_the_batch_cannot_be_sliced_and_e205_names_it() -> None:
    plan, problems = plan_of(
        """
        loss batch_softmax
        input logits : float[B, V] grad
        term t = mean(softmax(log_softmax(logits, dim=V), dim=B))
        """
    )
    assert plan is None
    (problem,) = problems
    assert problem.code == "E205"
    assert "softmax() over B" in problem.message
    assert (problem.span.line, problem.span.col) == (3, 15)


def test_a_spec_without_a_class_or_hidden_dim_has_nothing_to_slice() -> None:
    plan, problems = plan_slices(build_ir("mse"))
    assert plan is None and problems[0].code == "E205"
    assert "nothing to slice" in problems[0].message


def test_a_metric_that_keeps_the_vocabulary_dim_is_e205() -> None:
    plan, problems = plan_of(
        """
        loss probs
        input logits : float[N, V] grad
        term t = mean(logsumexp(logits, dim=V))
        metric p = softmax(logits, dim=V)
        """
    )
    assert problems and problems[0].code == "E205"
    assert "keeps the dim V" in problems[0].message
    assert problems[0].span.line == 4


def test_means_become_sums_over_counts_with_the_same_value() -> None:
    ir = build_ir("cross_entropy")
    rewritten = means_as_sums(ir)
    assert "mean" in {n.op for n in ir.nodes}
    reduced = [n for n in rewritten.nodes if n.op == "mean"]
    assert not reduced
    assert {"sum", "count", "maximum", "div"} <= {n.op for n in rewritten.nodes}
