"""`begin_step` in one process, and a process group of one rank.

LANGUAGE.md "Data parallel and micro-batches": after `loss_fn.begin_step(micro_batches)`
every `global_sum` uses the totals over all the micro-batches of the step, so the gradients
summed over the micro-batches are the gradient of the whole batch. A group of one rank
sums over nothing: its graphs and results are those of no process group at all. (Several
ranks: test_distributed.py.)
"""

from __future__ import annotations

import itertools

import pytest
import torch

import lossdsl
from lossdsl import InputError
from tests.reference.rl_reference import AGG_MODES

B, T = 6, 5


def grpo_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logp = -(torch.rand(B, T, generator=g, dtype=torch.float64) * 3 + 0.01)
    lengths = torch.tensor([5, 0, 2, 4, 1, 3])  # a ragged mask with an empty row
    return dict(
        logp=logp,
        old_logp=logp + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64),
        ref_logp=logp + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64),
        advantages=torch.randn(B, 1, generator=g, dtype=torch.float64),
        mask=torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1),
    )


def split(batch: dict[str, torch.Tensor], bounds: list[int]) -> list[dict[str, torch.Tensor]]:
    return [{k: v[a:b] for k, v in batch.items()} for a, b in itertools.pairwise(bounds)]


def whole_and_accumulated(spec: str, params: dict, bounds: list[int]) -> tuple:
    batch = grpo_batch()
    whole_logp = batch["logp"].clone().requires_grad_()
    whole = lossdsl.load(spec, params=params, compile=False)(**{**batch, "logp": whole_logp})
    whole.loss.backward()
    loss_fn = lossdsl.load(spec, params=params, compile=False)
    logp = batch["logp"].clone().requires_grad_()
    calls = split({**batch, "logp": logp}, bounds)
    loss_fn.begin_step(calls)
    total = sum(loss_fn(**call).loss for call in calls)
    total.backward()
    loss_fn.end_step()
    return whole.loss, whole_logp.grad, total, logp.grad


@pytest.mark.parametrize("agg", AGG_MODES)
def test_micro_batches_of_a_step_add_up_to_the_whole_batch(agg):
    """Uneven micro-batches (1, 3 and 2 rows, one with no valid token): the losses and
    gradients summed over them equal the whole batch's, in every aggregation mode."""
    want_loss, want_grad, loss, grad = whole_and_accumulated("grpo", {"agg": agg}, [0, 1, 4, 6])
    torch.testing.assert_close(loss, want_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-12, atol=1e-12)


def test_without_begin_step_each_micro_batch_is_normalised_on_its_own():
    """The calls after `end_step` sum within each call again: the token means of the
    micro-batches, added, are not the whole batch's."""
    batch = grpo_batch()
    loss_fn = lossdsl.load("grpo", params={"agg": "token_mean"}, compile=False)
    calls = split(batch, [0, 1, 4, 6])
    loss_fn.begin_step(calls)
    stepped = sum(float(loss_fn(**call).loss) for call in calls)
    loss_fn.end_step()
    per_call = sum(float(loss_fn(**call).loss) for call in calls)
    assert stepped == pytest.approx(float(loss_fn(**batch).loss), abs=1e-12)
    assert abs(per_call - stepped) > 1e-3


def test_begin_step_refuses_what_is_not_a_list_of_calls():
    loss_fn = lossdsl.load("grpo", compile=False)
    batch = grpo_batch()
    with pytest.raises(InputError, match="list of micro-batches"):
        loss_fn.begin_step(batch)
    with pytest.raises(InputError, match="at least one micro-batch"):
        loss_fn.begin_step([])
    with pytest.raises(InputError, match="micro-batch 1 is a tuple"):
        loss_fn.begin_step([batch, (1, 2)])


def test_begin_step_needs_only_what_the_global_sums_read():
    """A trainer knows the masks of a step before it runs the model: begin_step takes just
    them, and the calls that follow pass logits and actions (a variant deriving `logp`)."""
    g = torch.Generator().manual_seed(2)
    batch = grpo_batch()
    del batch["logp"]
    logits = torch.randn(B, T, 3, generator=g, dtype=torch.float64, requires_grad=True)
    batch.update(logits=logits, actions=torch.randint(0, 3, (B, T), generator=g))
    whole_fn = lossdsl.load("grpo", params={"agg": "seq_mean_token_mean"}, compile=False)
    want = torch.autograd.grad(whole_fn(**batch).loss, logits)[0]
    loss_fn = lossdsl.load("grpo", params={"agg": "seq_mean_token_mean"}, compile=False)
    calls = split(batch, [0, 4, 6])
    loss_fn.begin_step([{"mask": call["mask"]} for call in calls])
    got = torch.autograd.grad(sum(loss_fn(**call).loss for call in calls), logits)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


DERIVED_COUNT = """loss derived_count
input x : float[B] grad
input w : float[B]
input n : float[B] = w * 2
term t = sum(x) / max(global_sum(sum(n)), 1)
"""


def test_a_call_summing_other_global_sum_arguments_than_the_step_is_an_input_error():
    """Where a `global_sum` reads a derived input, the totals of a step that passed it do
    not serve a call that computes it (or the other way round); nor does a step whose
    micro-batches differ so."""
    loss_fn = lossdsl.load_text(DERIVED_COUNT, compile=False)
    x, w = torch.randn(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    loss_fn.begin_step([{"n": 2 * w}])
    with pytest.raises(InputError, match="not those the totals of begin_step were summed for"):
        loss_fn(x=x, w=w)
    with pytest.raises(InputError, match="micro-batch 1 sums other global_sum"):
        loss_fn.begin_step([{"n": 2 * w}, {"w": w}])
    with pytest.raises(InputError, match="missing input `w`"):
        loss_fn.begin_step([{"x": x}])


def test_micro_batches_whose_sums_differ_in_shape_are_an_input_error():
    text = (
        "loss per_column\ninput x : float[B, C] grad\ninput m : bool[B, C]\n"
        "term t = sum(x) / max(sum(global_sum(count(m, dim=B))), 1)\n"
    )
    loss_fn = lossdsl.load_text(text, compile=False)
    with pytest.raises(InputError, match="shape must be the same in each"):
        loss_fn.begin_step(
            [
                {"x": torch.ones(2, 3), "m": torch.ones(2, 3, dtype=torch.bool)},
                {"x": torch.ones(2, 4), "m": torch.ones(2, 4, dtype=torch.bool)},
            ]
        )


def test_a_spec_without_global_sum_ignores_begin_step():
    loss_fn = lossdsl.load("mse", compile=False)
    pred, target = torch.randn(4), torch.randn(4)
    before = loss_fn(input=pred, target=target).loss
    loss_fn.begin_step([{"input": pred, "target": target}])
    torch.testing.assert_close(loss_fn(input=pred, target=target).loss, before, rtol=0, atol=0)


def test_a_process_group_of_one_rank_changes_nothing(tmp_path):
    """Loaded with no process group, with the default group of one rank, and with that
    group passed as `group=`: the same graph, node for node, and the same loss and gradients,
    per call and after `begin_step`."""
    import torch.distributed as dist

    def run(group=None) -> tuple[str, str, torch.Tensor, torch.Tensor, torch.Tensor]:
        loss_fn = lossdsl.load("grpo", params={"agg": "token_mean"}, compile=False, group=group)
        batch = grpo_batch()
        logp = batch["logp"].clone().requires_grad_()
        out = loss_fn(**{**batch, "logp": logp})
        out.loss.backward()
        per_call_code = loss_fn.graph_module.code
        calls = split(batch, [0, 2, 6])
        loss_fn.begin_step(calls)
        stepped = torch.stack([loss_fn(**call).loss for call in calls])
        stepped_code = loss_fn.graph_module.code
        return per_call_code, stepped_code, out.loss.detach(), logp.grad, stepped

    alone = run()
    assert not dist.is_initialized()
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        for got in (run(), run(dist.group.WORLD)):
            assert got[:2] == alone[:2]
            for value, want in zip(got[2:], alone[2:], strict=True):
                torch.testing.assert_close(value, want, rtol=0, atol=0)
    finally:
        dist.destroy_process_group()
