"""`compile=True`: one compilation across steps, params and sizes of named dims."""

from __future__ import annotations

import pytest
import torch

import lossdsl
from tests.support import CountingBackend, needs_one_compilation_across_sizes, spec_inputs

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


def batch(b: int, t: int, v: int = 11) -> dict:
    return {
        "logits": torch.randn(b, t, v, requires_grad=True),
        "actions": torch.randint(0, v, (b, t)),
        "advantages": torch.randn(b, t),
        "mask": torch.rand(b, t) > 0.2,
    }


@needs_one_compilation_across_sizes
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


def test_torch_without_lower_bounds_for_unbacked_sizes_compiles_static_shapes(
    write_spec, monkeypatch
):
    """torch before 2.13 (no `mark_unbacked(min=)`): static shapes, one compilation per shape
    and none for a shape seen before, the values those of the uncompiled graph."""
    from lossdsl.backend import compiled

    monkeypatch.setattr(compiled, "compiles_once_across_sizes", lambda: False)
    backend = CountingBackend()
    loss_fn = lossdsl.load(write_spec(SPEC), compile=True, backend=backend)
    eager = lossdsl.load(write_spec(SPEC, "eager.loss"))
    for step, (b, t) in enumerate([(2, 3), (3, 8), (2, 3), (3, 8), (5, 1)]):
        x = batch(b, t)
        out = loss_fn(**x, step=step)
        out.loss.backward()
        torch.testing.assert_close(out.loss, eager(**x, step=step).loss)
    assert backend.compilations == 3


def test_callers_tensors_keep_no_dynamic_marks(write_spec):
    loss_fn = lossdsl.load(write_spec(SPEC), compile=True, backend=CountingBackend())
    x = batch(3, 4)
    loss_fn(**x)
    for tensor in x.values():
        assert not getattr(tensor, "_dynamo_dynamic_indices", set())
        assert not getattr(tensor, "_dynamo_weak_dynamic_indices", set())


@needs_one_compilation_across_sizes
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


# ---- one compilation per standard spec, across sizes, layouts, steps and params ----------


def sliced(tensor: torch.Tensor) -> torch.Tensor:
    """The same values as a view into a larger buffer: offset and not contiguous."""
    buffer = torch.zeros([n + 2 for n in tensor.shape], dtype=tensor.dtype)
    window = tuple(slice(1, 1 + n) for n in tensor.shape)
    buffer[window] = tensor.detach()
    return buffer.requires_grad_(tensor.requires_grad)[window]


def expanded(tensor: torch.Tensor) -> torch.Tensor:
    """A tensor of the same shape whose last dim is broadcast (stride 0)."""
    if tensor.dim() == 0 or tensor.requires_grad:
        return tensor
    return tensor[..., :1].expand(tensor.shape)


def fresh(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


SIZES = {  # each named dim changes, and goes down to 1
    "ppo": [
        {"B": 4, "T": 6, "V": 10},
        {"B": 3, "T": 6, "V": 10},
        {"B": 3, "T": 9, "V": 10},
        {"B": 3, "T": 9, "V": 17},
        {"B": 1, "T": 1, "V": 5},
    ],
    "grpo": [{"B": 4, "T": 6}, {"B": 5, "T": 6}, {"B": 5, "T": 2}, {"B": 1, "T": 1}],
    "cross_entropy": [
        {"...": [4], "C": 10},
        {"...": [9], "C": 10},
        {"...": [9], "C": 3},
        {"...": [1], "C": 1},
    ],
    "dpo": [{"B": 4}, {"B": 9}, {"B": 1}],
}


def optional(loss_fn) -> set[str]:
    return {spec["name"] for spec in loss_fn.SPEC["inputs"] if spec["default"] is not None}


def changing_params(loss_fn) -> list[str]:
    """Numeric params whose range holds 0.1 to 0.3 (set to a new value at every call)."""
    return [
        p["name"]
        for p in loss_fn.SPEC["params"]
        if p["range"][0] <= 0.1 and p["range"][1] >= 0.3 and p["default"] is not None
    ]


@pytest.mark.parametrize("spec", sorted(SIZES))
@needs_one_compilation_across_sizes
def test_standard_specs_compile_once_across_sizes_views_steps_and_params(spec):
    backend = CountingBackend()
    compiled = lossdsl.load(spec, compile=True, backend=backend)
    eager = lossdsl.load(spec)
    calls = 0
    for sizes in SIZES[spec]:
        for layout in (fresh, sliced, expanded):
            x = {name: layout(t) for name, t in spec_inputs(eager, sizes, calls).items()}
            if layout is expanded:  # optional inputs left out: their defaults are broadcast
                x = {k: v for k, v in x.items() if k not in optional(eager)}
            params = {name: 0.1 + 0.01 * calls for name in changing_params(eager)}
            out = compiled(**x, step=17 * calls, params=params)
            out.loss.backward()
            expected = eager(**x, step=17 * calls, params=params)
            torch.testing.assert_close(out.loss, expected.loss)
            for name, metric in expected.metrics.items():
                torch.testing.assert_close(out.metrics[name], metric)
            calls += 1
    assert backend.compilations == 1


def test_compiled_inputs_are_copied_only_for_layouts_the_compiled_code_cannot_index():
    from lossdsl.backend.compiled import _indexable

    def indexable(strides):
        """The last stride 1, the others at least 2 and strictly decreasing."""
        pairs = zip(strides[:-1], strides[1:], strict=True)
        return strides[-1] == 1 and all(a > b and a >= 2 for a, b in pairs)

    big = torch.randn(6, 7, 9)
    for tensor in [big, big[1:4, :-1, 2:], big[:, 0:1, :], torch.randn(1, 1, 5)]:
        prepared = _indexable(tensor)
        assert prepared.data_ptr() == tensor.data_ptr()  # the same memory: no copy
        assert torch.equal(prepared, tensor) and indexable(prepared.stride())
    for tensor in [torch.randn(5, 1).expand(5, 4), torch.randn(5, 1), big.transpose(0, 2)]:
        prepared = _indexable(tensor)
        assert prepared.data_ptr() != tensor.data_ptr()  # copied, into padded memory
        assert torch.equal(prepared, tensor) and indexable(prepared.stride())


def test_an_input_restrided_for_the_compiled_code_passes_its_gradient_straight_through():
    """A dim of size 1 given another stride is a view; as_strided's own backward would
    scatter the gradient into a zero-filled tensor the size of the input, every call."""
    from lossdsl.backend.compiled import _indexable

    leaf = torch.randn(4, 1, 9, requires_grad=True)
    tensor = leaf[:, :, :]  # strides (9, 9, 1): the size-1 dim's needs renumbering
    prepared = _indexable(tensor)
    assert prepared.stride() != tensor.stride() and prepared.data_ptr() == tensor.data_ptr()
    assert type(prepared.grad_fn).__name__ == "_AliasBackward"
    weights = torch.randn(4, 1, 9)
    (prepared * weights).sum().backward()
    torch.testing.assert_close(leaf.grad, weights)


def test_dim_names_are_keyed_wherever_the_ellipsis_stands():
    from lossdsl.backend.compiled import _dim_keys

    assert _dim_keys(["...", "V"], 3) == ["...0", "...1", "V"]
    assert _dim_keys(["V", "..."], 3) == ["V", "...0", "...1"]
    assert _dim_keys(["V", "...", 2], 3) == ["V", "...0", None]
    assert _dim_keys(["B", "T"], 3) == ["...0", "B", "T"]  # leading when unnamed
