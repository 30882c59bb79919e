"""Derived inputs: one spec taking log-probs, logits, or hidden states and a head."""

from __future__ import annotations

import textwrap

import pytest
import torch

import lossdsl
from lossdsl.passes import check_text

SPEC = textwrap.dedent(
    """
    loss chain
    input logp    : float[B, T] grad in (-inf, 0]
                  = gather(log_softmax(logits, dim=V), actions, dim=V)
    input logits  : float[B, T, V] grad = matmul(hidden, head, dim=H)
    input hidden  : float[B, T, H] grad
    input head    : float[V, H] grad
    input actions : int[B, T] in [0, V)
    input adv     : float[B, T]
    term policy = -mean(exp(logp - detach(logp)) * adv)
    """
).lstrip()
B, T, V, H = 2, 3, 7, 4


def tensors(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden": torch.randn(B, T, H, dtype=torch.float64, generator=g, requires_grad=True),
        "head": torch.randn(V, H, dtype=torch.float64, generator=g, requires_grad=True),
        "actions": torch.randint(0, V, (B, T), generator=g),
        "adv": torch.randn(B, T, dtype=torch.float64, generator=g),
    }


def test_the_three_ways_in_give_one_loss_and_chain_their_gradients() -> None:
    fn = lossdsl.load_text(SPEC)
    given = tensors()
    from_head = fn(**given)
    from_head.loss.backward()

    logits = (given["hidden"] @ given["head"].T).detach().requires_grad_()
    from_logits = fn(logits=logits, actions=given["actions"], adv=given["adv"])
    from_logits.loss.backward()

    logp = torch.log_softmax(logits.detach(), -1).gather(-1, given["actions"][..., None])
    logp = logp.squeeze(-1).requires_grad_()
    from_logp = fn(logp=logp, adv=given["adv"])
    from_logp.loss.backward()

    torch.testing.assert_close(from_logits.loss, from_head.loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(from_logp.loss, from_head.loss, rtol=1e-12, atol=1e-12)
    # d/d head = (d/d logits)ᵀ · hidden, summed over B and T
    expected = torch.einsum("btv,bth->vh", logits.grad, given["hidden"].detach())
    torch.testing.assert_close(given["head"].grad, expected, rtol=1e-12, atol=1e-12)


def test_each_set_of_inputs_builds_its_variant_once_and_keeps_it() -> None:
    fn = lossdsl.load_text(SPEC)
    given = tensors()
    fn(**given)
    head_graph = fn.graph_module
    logits = given["hidden"] @ given["head"].T
    fn(logits=logits, actions=given["actions"], adv=given["adv"])
    assert fn.graph_module is not head_graph
    assert "hidden" not in fn.code
    fn(**given)
    assert fn.graph_module is head_graph


def test_a_call_with_nothing_to_derive_from_says_what_else_it_could_pass() -> None:
    fn = lossdsl.load_text(SPEC)
    with pytest.raises(lossdsl.InputError) as caught:
        fn(actions=tensors()["actions"], adv=tensors()["adv"])
    message = str(caught.value)
    assert "missing inputs `hidden` and `head`" in message
    assert "`logits` or `logp`" in message


def test_an_input_a_call_leaves_unread_is_an_input_error() -> None:
    fn = lossdsl.load_text(SPEC)
    given = tensors()
    with pytest.raises(
        lossdsl.InputError, match="does not read `head` and `hidden` when `logits` is passed"
    ):
        fn(logits=given["hidden"] @ given["head"].T, **given)


def test_an_expression_of_other_dims_than_declared_is_e200_at_the_expression() -> None:
    checked = check_text(SPEC.replace("matmul(hidden, head, dim=H)", "matmul(head, hidden, dim=H)"))
    (error,) = [d for d in checked.diagnostics if d.severity == "error"]
    assert error.code == "E200"
    assert "declared float[B, T, V]" in error.message and "gives float[V, B, T]" in error.message
    assert (error.span.line, error.span.col) == (4, 39)


def test_an_expression_of_another_dtype_is_e201() -> None:
    text = SPEC.replace("input adv     : float[B, T]", "input adv     : float[B, T] = actions")
    (error,) = [d for d in check_text(text).diagnostics if d.severity == "error"]
    assert error.code == "E201" and "gives int[B, T]" in error.message


def test_check_reports_a_hazard_that_only_a_derivation_has() -> None:
    text = SPEC.replace("matmul(hidden, head, dim=H)", "log(matmul(hidden, head, dim=H))")
    codes = {d.code for d in check_text(text).diagnostics}
    assert "W300" in codes  # the log of a product that can be 0 or negative


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("cross_entropy", {"hidden", "head", "target"}),
        ("sft_nll", {"hidden", "head", "labels"}),
        (
            "ppo",
            {
                "hidden",
                "head",
                "values",
                "actions",
                "old_logp",
                "old_values",
                "advantages",
                "returns",
                "mask",
            },
        ),
        ("grpo", {"hidden", "head", "actions", "old_logp", "advantages", "mask"}),
        (
            "dpo",
            {
                "chosen_hidden",
                "rejected_hidden",
                "head",
                "chosen_labels",
                "rejected_labels",
                "ref_chosen_hidden",
                "ref_rejected_hidden",
                "ref_head",
            },
        ),
        ("distill_kl", {"student_hidden", "student_head", "teacher_hidden", "teacher_head"}),
        ("kl_penalty", {"hidden", "head", "actions", "ref_hidden", "ref_head"}),
    ],
)
def test_the_standard_vocabulary_losses_take_hidden_states_and_a_head(name, given) -> None:
    ir = lossdsl.build_ir(name)
    computed = ir.derivations.computed_for(given)
    variant = lossdsl.build_ir(name, computed=computed)
    inputs = {i.name for i in variant.inputs}
    assert inputs <= given | {i.name for i in variant.inputs if i.default is not None}
    assert "matmul" in {n.op for n in variant.nodes}


FALLBACK = textwrap.dedent(
    """
    loss with_reference
    input logp       : float[B, T] grad = gather(log_softmax(logits, dim=V), actions, dim=V)
    input logits     : float[B, T, V] grad
    input actions    : int[B, T] in [0, V)
    input ref_logp   : float[B, T] = gather(log_softmax(ref_logits, dim=V), actions, dim=V)
                       else 0
    input ref_logits : float[B, T, V]
    term kl = mean(square(logp - ref_logp))
    """
).lstrip()


def test_a_fallback_number_stands_in_when_nothing_to_derive_from_is_passed() -> None:
    fn = lossdsl.load_text(FALLBACK)
    logp = -torch.rand(B, T, dtype=torch.float64)
    torch.testing.assert_close(fn(logp=logp).loss, logp.square().mean())
    logits = torch.randn(B, T, V, dtype=torch.float64)
    actions = torch.randint(0, V, (B, T))
    same = fn(logits=logits, actions=actions, ref_logits=logits)
    assert float(same.loss) == 0.0  # the reference derived from the same logits
    alone = fn(logits=logits, actions=actions)
    assert "ref_logits" not in {i["name"] for i in fn.SPEC["inputs"]}
    assert float(alone.loss) > 0  # against log-prob 0


def test_grpo_takes_a_reference_head_or_no_reference() -> None:
    fn = lossdsl.load("grpo")
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(B, T, H, generator=g, requires_grad=True)
    head = torch.randn(V, H, generator=g, requires_grad=True)
    common = dict(
        hidden=hidden,
        head=head,
        actions=torch.randint(0, V, (B, T), generator=g),
        old_logp=-torch.rand(B, T, generator=g),
        advantages=torch.randn(B, 1, generator=g),
        mask=torch.ones(B, T, dtype=torch.bool),
    )
    same_model = fn(**common, ref_hidden=hidden.detach(), ref_head=head.detach())
    assert float(same_model.terms["kl"]) == 0.0
    no_reference = fn(**common)
    assert float(no_reference.terms["kl"]) > 0.0  # against log-prob 0, as documented


CHOSEN = textwrap.dedent(
    """
    loss chosen
    input a       : float[B] grad
    input lengths : float[B] in [0, inf) = count(mask, dim=T)
    input mask    : bool[B, T]
    param mode = "plain" in {"plain", "per_token"}
    term t = mean(select(mode, plain = square(a), per_token = square(a) / max(lengths, 1)))
    """
).lstrip()


def test_a_derived_input_only_an_unchosen_branch_reads_is_neither_needed_nor_accepted() -> None:
    fn = lossdsl.load_text(CHOSEN)
    a = torch.tensor([1.0, 2.0], dtype=torch.float64)
    assert fn(a=a).loss.item() == 2.5
    with pytest.raises(lossdsl.InputError, match='does not read `lengths` with mode="plain"'):
        fn(a=a, lengths=torch.ones(2))
    fn.set_params(mode="per_token")
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert fn(a=a, mask=mask).loss.item() == (0.5 + 4.0) / 2
    assert fn(a=a, lengths=torch.tensor([2.0, 1.0])).loss.item() == (0.5 + 4.0) / 2
    with pytest.raises(lossdsl.InputError, match="missing input `mask`.*or pass `lengths`"):
        fn(a=a)


def test_an_input_only_an_unchosen_branch_reads_is_not_needed() -> None:
    text = textwrap.dedent(
        """
        loss negatives
        input q   : float[N] grad
        input neg : float[N]
        param mode = "own" in {"own", "given"}
        term t = mean(select(mode, own = square(q), given = square(q - neg)))
        """
    ).lstrip()
    fn = lossdsl.load_text(text)
    q = torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert fn(q=q).loss.item() == 5.0
    with pytest.raises(lossdsl.InputError, match='does not read `neg` with mode="own"'):
        fn(q=q, neg=q)
    fn.set_params(mode="given")
    assert fn(q=q, neg=torch.ones(2, dtype=torch.float64)).loss.item() == 2.0
    with pytest.raises(lossdsl.InputError, match="missing input `neg`"):
        fn(q=q)
