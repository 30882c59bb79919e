"""`compile=True`: one compilation across steps, params and sizes of named dims."""

from __future__ import annotations

import torch

import lossdsl

SPEC = """
loss masked_policy
input logits     : float[B, T, V]  grad
input actions    : int[B, T]
input advantages : float[B, T]
input mask       : bool[B, T]
param clip = 0.2 in [0, 1]
param ent_coef = cosine(0.01, 0.001, steps=100)
let lp    = gather(log_softmax(logits, dim=V), actions, dim=V)
let ratio = exp(clamp(lp - detach(lp), max=20))
term policy  = -sum(min(ratio * advantages, clamp(ratio, 1 - clip, 1 + clip) * advantages),
                    where=mask) / max(count(mask), 1)
term entropy = mean(entropy(logits, dim=V), where=mask)
minimize policy - ent_coef * entropy
"""


class CountingBackend:
    """A torch.compile backend that runs the captured graph as is and counts captures."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        self.compilations += 1
        return graph_module.forward


def batch(b: int, t: int, v: int = 11) -> dict:
    return {
        "logits": torch.randn(b, t, v, requires_grad=True),
        "actions": torch.randint(0, v, (b, t)),
        "advantages": torch.randn(b, t),
        "mask": torch.rand(b, t) > 0.2,
    }


def test_one_compilation_across_steps_params_and_dim_sizes(write_spec):
    backend = CountingBackend()
    loss_fn = lossdsl.load(write_spec(SPEC), compile=True, backend=backend)
    eager = lossdsl.load(write_spec(SPEC, "eager.loss"))
    for call, (b, t) in enumerate([(2, 3), (3, 8), (5, 2), (4, 13), (2, 5), (7, 7)]):
        x = batch(b, t)
        loss_fn.set_params(clip=0.1 + 0.05 * call)
        eager.set_params(clip=0.1 + 0.05 * call)
        out = loss_fn(**x, step=call * 17, params={"ent_coef": 0.01 * call} if call % 2 else None)
        out.loss.backward()
        expected = eager(
            **x, step=call * 17, params={"ent_coef": 0.01 * call} if call % 2 else None
        )
        torch.testing.assert_close(out.loss, expected.loss)
    assert backend.compilations == 1


def test_callers_tensors_keep_no_dynamic_marks(write_spec):
    loss_fn = lossdsl.load(write_spec(SPEC), compile=True, backend=CountingBackend())
    x = batch(3, 4)
    loss_fn(**x)
    for tensor in x.values():
        assert not getattr(tensor, "_dynamo_dynamic_indices", set())
        assert not getattr(tensor, "_dynamo_weak_dynamic_indices", set())


def test_one_compilation_per_rank_of_leading_dims(write_spec):
    backend = CountingBackend()
    loss_fn = lossdsl.load(
        write_spec("""
        loss ranks
        input x : float[..., C] grad
        input y : float[..., C]
        term t = mean(square(x - y))
    """),
        compile=True,
        backend=backend,
    )
    for shape in [(2, 3), (4, 5), (2, 3, 4), (3, 5, 6), (6, 2)]:
        loss_fn(x=torch.randn(shape), y=torch.randn(shape))
    assert backend.compilations == 2  # rank 2 and rank 3
