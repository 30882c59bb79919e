"""Sliced execution (`chunk=`): the values and gradients of the unsliced module, slice by slice.

Every spec of the standard library that can be sliced runs here on small random inputs with
ragged masks and an all-masked sequence, at slice sizes that divide the rows, do not, cut
sequences into tokens, and hold everything at once.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import lossdsl
from lossdsl.diagnostics import LossSpecError
from tests.support import needs_one_compilation_across_sizes

B, T, V, N, H = 3, 5, 11, 13, 6
SIZES = {"B": B, "T": T, "V": V, "C": V, "N": N, "H": H, "Tc": T, "Tr": T + 1}


def random_inputs(fn, dtype=torch.float64, seed=0, leading=(N,), ir=None) -> dict:
    """Inputs of a loaded spec (of the variant `ir`, by default the spec as written), drawn
    to fit each input's declared dims and range: class indices in range (a few ignored, -100,
    where the range allows), ragged bool masks with one all-masked row, log-probabilities
    <= 0."""
    g = torch.Generator().manual_seed(seed)
    made = {}
    ir = ir or fn.ir
    for spec in ir.inputs:
        spec = {
            "name": spec.name,
            "dtype": spec.dtype,
            "dims": spec.dims,
            "grad": spec.grad,
            "default": spec.default,
            "range": spec.range,
        }
        if spec["default"] is not None and spec["dtype"] == "bool":
            continue
        shape = [d for dim in spec["dims"] for d in (leading if dim == "..." else [dim])]
        shape = [SIZES.get(d, 4) if isinstance(d, str) else d for d in shape]
        name = spec["name"]
        if spec["dtype"] == "bool":
            mask = torch.rand(shape, generator=g) > 0.3
            if mask.dim() >= 2:
                mask[1] = False  # an all-masked sequence
            made[name] = mask
        elif spec["dtype"] == "int":
            values = torch.randint(0, V, shape, generator=g)
            declared = spec["range"]
            ignorable = declared is None or declared.lo == -100
            if ("target" in name or "labels" in name) and ignorable:
                values[..., 1] = -100  # the ignore index
            made[name] = values
        else:
            value = torch.randn(shape, dtype=dtype, generator=g)
            if "logp" in name or name == "input" and fn.SPEC["name"] == "nll":
                value = -value.abs()
            made[name] = value.requires_grad_(spec["grad"])
    return made


def copies(inputs: dict) -> dict:
    return {
        k: v.detach().clone().requires_grad_(v.requires_grad) if v.is_floating_point() else v
        for k, v in inputs.items()
    }


def assert_same_run(reference, sliced, inputs: dict, tolerance: float, **call) -> None:
    a, b = copies(inputs), copies(inputs)
    expected, got = reference(**a, **call), sliced(**b, **call)
    expected.loss.backward()
    got.loss.backward()
    close = dict(atol=tolerance, rtol=tolerance, equal_nan=True)
    torch.testing.assert_close(got.loss, expected.loss, **close)
    for group in ("terms", "weights", "metrics"):
        for name, value in getattr(expected, group).items():
            torch.testing.assert_close(getattr(got, group)[name], value, **close, msg=name)
    for name, value in a.items():
        if value.requires_grad:
            assert b[name].grad is not None, name
            torch.testing.assert_close(b[name].grad, value.grad, **close, msg=name)


CASES = [
    ("cross_entropy", {}),
    ("cross_entropy", {"label_smoothing": 0.1}),
    ("nll", {}),
    ("sft_nll", {}),
    ("sft_nll", {"label_smoothing": 0.2}),
    ("distill_kl", {"direction": "forward"}),
    ("distill_kl", {"direction": "reverse", "temperature": 2.0}),
    ("curriculum", {}),
    ("multi_objective", {}),
    *[
        ("ppo", {"agg": agg})
        for agg in (
            "token_mean",
            "seq_mean_token_mean",
            "seq_mean_token_sum",
            "seq_mean_token_sum_norm",
        )
    ],
    ("ppo", {"dual_clip": "off"}),
]


@pytest.mark.parametrize("chunk", [1, 4, 7, 1000])
@pytest.mark.parametrize("name, params", CASES, ids=[f"{n}-{p}" for n, p in CASES])
def test_sliced_equals_unsliced_in_float64(name: str, params: dict, chunk: int) -> None:
    reference = lossdsl.load(name, params=params)
    sliced = lossdsl.load(name, params=params, chunk=chunk)
    assert_same_run(reference, sliced, random_inputs(reference), 1e-10, step=7)


@pytest.mark.parametrize("name", ["cross_entropy", "sft_nll", "ppo"])
def test_sliced_equals_unsliced_in_float32(name: str) -> None:
    reference = lossdsl.load(name)
    sliced = lossdsl.load(name, chunk=4)
    assert_same_run(reference, sliced, random_inputs(reference, torch.float32), 1e-5)


FROM_HEADS = [
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
            "ref_logp",
        },
    ),
    ("grpo", {"hidden", "head", "actions", "old_logp", "ref_logp", "advantages", "mask"}),
    ("dr_grpo", {"hidden", "head", "actions", "old_logp", "ref_logp", "advantages", "mask"}),
    ("gspo", {"hidden", "head", "actions", "old_logp", "advantages", "mask"}),
    ("dapo", {"hidden", "head", "actions", "old_logp", "advantages", "mask"}),
    ("cispo", {"hidden", "head", "actions", "old_logp", "advantages", "mask"}),
    ("gmpo", {"hidden", "head", "actions", "old_logp", "advantages", "mask"}),
    ("reinforce", {"hidden", "head", "actions", "values", "returns", "mask"}),
    ("tis", {"hidden", "head", "actions", "old_logp", "rollout_logp", "advantages", "mask"}),
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
    (
        "simpo",
        {
            "chosen_hidden",
            "rejected_hidden",
            "head",
            "chosen_tokens",
            "rejected_tokens",
            "chosen_mask",
            "rejected_mask",
        },
    ),
    (
        "orpo",
        {
            "chosen_hidden",
            "rejected_hidden",
            "head",
            "chosen_tokens",
            "rejected_tokens",
            "chosen_mask",
            "rejected_mask",
        },
    ),
    ("distill_kl", {"student_hidden", "student_head", "teacher_hidden", "teacher_head"}),
    ("kl_penalty", {"hidden", "head", "actions", "ref_hidden", "ref_head", "mask"}),
]


# Slices of tokens (3), of one whole sequence (8 rows, T = 5) and of two (10: `[2, T]` heads)
@pytest.mark.parametrize("chunk", [3, 8, 10])
@pytest.mark.parametrize("name, given", FROM_HEADS, ids=[n for n, _ in FROM_HEADS])
def test_standard_specs_from_hidden_states_sliced_equal_unsliced(name, given, chunk) -> None:
    reference = lossdsl.load(name)
    variant = lossdsl.build_ir(name, computed=reference.ir.derivations.computed_for(given))
    inputs = random_inputs(reference, ir=variant)
    assert set(inputs) <= given
    assert_same_run(reference, lossdsl.load(name, chunk=chunk), inputs, 1e-10)


HEAD = """
loss head_ce
input hidden : float[N, H] grad
input head   : float[V, H] grad
input bias   : float[V] grad
input target : int[N] in [-100, V)
param z_coef = 1e-4 in [0, inf)
let valid  = target != -100
let logits = matmul(hidden, head, dim=H) + bias
term ce = mean(-gather(log_softmax(logits, dim=V), where(valid, target, 0), dim=V), where=valid)
term z  = mean(square(logsumexp(logits, dim=V)), where=valid)
minimize ce + z_coef * z
metric accuracy = mean(argmax(logits, dim=V) == target, where=valid)
"""


def head_inputs(dtype=torch.float64, rows=N) -> dict:
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, V, (rows,), generator=g)
    target[::4] = -100
    return {
        "hidden": torch.randn(rows, H, dtype=dtype, generator=g).requires_grad_(),
        "head": torch.randn(V, H, dtype=dtype, generator=g).requires_grad_(),
        "bias": torch.randn(V, dtype=dtype, generator=g).requires_grad_(),
        "target": target,
    }


@pytest.mark.parametrize("chunk", [1, 2, 5, N, 64])
def test_a_fused_linear_head_gives_the_unsliced_values_and_gradients(chunk: int) -> None:
    reference = lossdsl.load_text(HEAD)
    sliced = lossdsl.load_text(HEAD, chunk=chunk)
    assert_same_run(reference, sliced, head_inputs(), 1e-10)


def test_the_head_matches_torch_cross_entropy_of_the_full_logits() -> None:
    inputs = head_inputs()
    out = lossdsl.load_text(HEAD, chunk=4)(**inputs)
    logits = inputs["hidden"] @ inputs["head"].T + inputs["bias"]
    expected = torch.nn.functional.cross_entropy(logits, inputs["target"], ignore_index=-100)
    torch.testing.assert_close(out.terms["ce"], expected.detach(), rtol=1e-12, atol=1e-12)


def test_bf16_hidden_states_and_head_accumulate_their_gradients_in_float32() -> None:
    exact = head_inputs(torch.float64, rows=64)
    low = {
        k: v.detach().to(torch.bfloat16).requires_grad_(v.requires_grad)
        if v.is_floating_point()
        else v
        for k, v in exact.items()
    }
    reference = lossdsl.load_text(HEAD)
    reference(**exact).loss.backward()
    sliced = lossdsl.load_text(HEAD, chunk=3)
    sliced(**low).loss.backward()
    for name in ("hidden", "head", "bias"):
        grad = low[name].grad
        assert grad.dtype == torch.bfloat16
        torch.testing.assert_close(grad.double(), exact[name].grad, rtol=2e-2, atol=2e-2)


def test_bf16_hidden_states_with_a_float32_head_match_the_unsliced_module() -> None:
    """Operands of two dtypes: the slice's product and both gradients' products in float32,
    as the unsliced module computes them."""
    inputs = head_inputs(torch.float32, rows=40)
    inputs["hidden"] = inputs["hidden"].detach().bfloat16().requires_grad_()
    assert_same_run(lossdsl.load_text(HEAD), lossdsl.load_text(HEAD, chunk=6), inputs, 1e-5)


PAIRS = """
loss pairs
input chosen   : float[B, T, V] grad
input tokens   : int[B, T] in [0, V)
input mask     : bool[B, T]
input ref_logp : float[B]
param beta = 0.5 in (0, inf)
let seq = sum(gather(log_softmax(chosen, dim=V), tokens, dim=V), dim=T, where=mask)
term dpo = mean(-logsigmoid(beta * (seq - ref_logp)))
metric top = max(chosen)
metric per_token = gather(log_softmax(chosen, dim=V), tokens, dim=V)
"""


@pytest.mark.parametrize("chunk", [1, 2, 4, T, 2 * T, 100])
def test_per_sequence_sums_cut_across_slices_take_two_passes_with_the_same_result(chunk):
    reference = lossdsl.load_text(PAIRS)
    sliced = lossdsl.load_text(PAIRS, chunk=chunk)
    assert_same_run(reference, sliced, random_inputs(reference), 1e-10)


class Reads(TorchDispatchMode):
    """How many ops that compute (not views) read the given tensor while active."""

    def __init__(self, watched: torch.Tensor) -> None:
        super().__init__()
        self.storage = watched.untyped_storage().data_ptr()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat = [*args, *(kwargs or {}).values()]
        if not func.is_view and any(
            isinstance(a, torch.Tensor) and a.untyped_storage().data_ptr() == self.storage
            for a in flat
        ):
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_two_passes_recompute_only_what_carries_gradient_not_the_reference_model() -> None:
    """DPO from hidden states: the log-sigmoid of per-sequence sums cut across slices takes
    two passes; the backward's pass computes the policy's slices again, not the reference
    head's, whose log-probs carry no gradient."""
    given = FROM_HEADS[[n for n, _ in FROM_HEADS].index("dpo")][1]
    reference = lossdsl.load("dpo")
    variant = lossdsl.build_ir("dpo", computed=reference.ir.derivations.computed_for(given))
    inputs = random_inputs(reference, ir=variant)
    sliced = lossdsl.load("dpo", chunk=2)
    assert_same_run(reference, sliced, inputs, 1e-10)
    with Reads(inputs["ref_head"]) as forward:
        out = sliced(**inputs)
    with Reads(inputs["ref_head"]) as backward:
        out.loss.backward()
    assert forward.count > 0 and backward.count == 0


class Ops(TorchDispatchMode):
    """The ops run while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


def test_a_slice_of_a_sequence_of_hidden_states_is_multiplied_as_one_matrix() -> None:
    """A slice `[1, rows, H]` of `[B, T, H]`: torch.matmul would run it as a batched product
    (its B stride does not fold), markedly slower than one `[rows, H]` product on a CPU."""
    reference = lossdsl.load("grpo")
    given = FROM_HEADS[[n for n, _ in FROM_HEADS].index("grpo")][1]
    variant = lossdsl.build_ir("grpo", computed=reference.ir.derivations.computed_for(given))
    inputs = random_inputs(reference, ir=variant)
    sliced = lossdsl.load("grpo", chunk=2)
    with Ops() as ops:
        sliced(**inputs).loss.backward()
    assert torch.ops.aten.mm in ops.seen and torch.ops.aten.bmm not in ops.seen
    assert_same_run(reference, sliced, inputs, 1e-10)


class Products(TorchDispatchMode):
    """The shapes the matrix products wrote while active."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm_):
            self.shapes.append(tuple(out.shape))
        return out


def test_a_half_precision_head_gradient_is_added_into_float32_block_by_block() -> None:
    """add_product on the CPU with bf16 operands: a [V, rows] x [rows, H] product over more
    vocabulary rows than one block, added twice into a float32 buffer, is twice the float64
    product to bf16's precision (each block's product rounded once)."""
    from lossdsl.backend.slicing import _PRODUCT_BLOCK_ROWS, add_product

    g = torch.Generator().manual_seed(0)
    a = torch.randn(2 * _PRODUCT_BLOCK_ROWS + 37, 16, generator=g).bfloat16()
    b = torch.randn(16, 24, generator=g).bfloat16()
    whole = torch.ones(a.shape[0], 24)
    add_product(whole, a, b)
    add_product(whole, a, b)
    expected = 1 + 2 * (a.double() @ b.double())
    torch.testing.assert_close(whole.double(), expected, rtol=1e-2, atol=4e-2)


@pytest.mark.parametrize("compile", [False, True])
def test_a_head_slice_is_one_vocabulary_major_product(compile: bool) -> None:
    """`head · rowsᵀ` writes a slice's logits as `[V, rows]`, which a CPU's BLAS computes
    faster at a slice's few rows than `rows · headᵀ`; the slice graph takes that layout as
    it is (its V moved last, a view), and the gradient it gives back in the same layout is
    what the products of the rows' gradient, `[H, rows]`, and the head's read."""
    options = {"compile": True, "backend": "aot_eager"} if compile else {}
    sliced = lossdsl.load_text(HEAD, chunk=4, **options)
    inputs = head_inputs(torch.float32)
    with Products() as seen:
        sliced(**inputs).loss.backward()
    rows = {3, 4}  # 13 rows in four even slices
    assert {(V, r) for r in rows} <= set(seen.shapes)  # the logits, and their gradient's
    assert {(H, r) for r in rows} <= set(seen.shapes)  # the rows' gradient, transposed
    assert set(seen.shapes) <= {(V, r) for r in rows} | {(H, r) for r in rows} | {(V, H)}
    (parts,) = sliced._graph._parts.values()
    graph = parts.one_slice.graph
    code = (graph._eager if compile else graph).__self__.code
    assert "_by_vocab):" in code and ".movedim(0, -1)" in code  # the last placeholder
    assert_same_run(lossdsl.load_text(HEAD), sliced, head_inputs(torch.float32), 1e-5)


class LargestTensor(TorchDispatchMode):
    """The largest number of elements any op produced while active."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_intermediate_is_larger_than_a_slice_of_the_logits_or_the_callers_tensors():
    rows = 96
    inputs = head_inputs(torch.float32, rows=rows)
    sliced = lossdsl.load_text(HEAD, chunk=8)
    with LargestTensor() as seen:
        sliced(**inputs).loss.backward()
    callers = max(inputs["hidden"].numel(), inputs["head"].numel())
    assert seen.largest <= max(8 * V, callers)
    with LargestTensor() as unsliced:
        lossdsl.load_text(HEAD)(**head_inputs(torch.float32, rows=rows)).loss.backward()
    assert unsliced.largest >= rows * V  # what slicing avoids: the whole logits


def test_chunk_auto_picks_slices_that_bound_the_widest_block() -> None:
    from lossdsl.backend.slicing import AUTO_SLICE_BYTES, _Shapes

    sliced = lossdsl.load_text(HEAD, chunk="auto")
    graph = sliced._graph
    inputs = head_inputs(torch.float32, rows=40)
    shapes = _Shapes(graph.ir, tuple(inputs[s.name] for s in graph.ir.inputs))
    rows = graph.rows_per_slice(shapes)
    assert rows * V * 4 <= AUTO_SLICE_BYTES and rows >= 1
    assert_same_run(lossdsl.load_text(HEAD), sliced, inputs, 1e-5)


def test_chunk_auto_gives_an_accelerator_the_rows_its_products_need() -> None:
    """On the CPU, rows within the memory budget; elsewhere (a meta device stands for a GPU)
    at least ACCELERATOR_MIN_ROWS, and the budget's rows where those are more."""
    from lossdsl.backend.slicing import ACCELERATOR_MIN_ROWS, AUTO_SLICE_BYTES, _Shapes

    graph = lossdsl.load_text(HEAD, chunk="auto")._graph

    def rows(device: str, vocabulary: int) -> int:
        inputs = head_inputs(torch.float32, rows=40)
        inputs["head"], inputs["bias"] = torch.zeros(vocabulary, H), torch.zeros(vocabulary)
        ordered = tuple(inputs[s.name].to(device) for s in graph.ir.inputs)
        return graph.rows_per_slice(_Shapes(graph.ir, ordered))

    wide = 2 * AUTO_SLICE_BYTES // 4 // ACCELERATOR_MIN_ROWS  # the budget: half the rows
    assert rows("cpu", wide) == ACCELERATOR_MIN_ROWS // 2
    assert rows("meta", wide) == ACCELERATOR_MIN_ROWS
    assert rows("meta", V) == rows("cpu", V) > ACCELERATOR_MIN_ROWS


def test_chunk_n_on_a_spec_that_cannot_be_sliced_is_e205_at_load() -> None:
    spec = """
loss batch_softmax
input logits : float[B, V] grad
term t = mean(softmax(log_softmax(logits, dim=V), dim=B))
"""
    with pytest.raises(LossSpecError) as caught:
        lossdsl.load_text(spec, chunk=4)
    assert [d.code for d in caught.value.diagnostics] == ["E205"]
    with pytest.warns(lossdsl.LossSpecWarning, match="runs unsliced"):
        fn = lossdsl.load_text(spec, chunk="auto")
    logits = torch.randn(B, V, requires_grad=True)
    fn(logits=logits).loss.backward()
    assert logits.grad is not None


def test_a_class_index_out_of_range_in_slices_is_an_input_error_and_prints_nothing(
    capfd,
) -> None:
    sliced = lossdsl.load("cross_entropy", chunk=8)
    with pytest.raises(lossdsl.InputError, match=r"`target` leads to a class index outside"):
        sliced(hidden=torch.randn(20, 16), head=torch.randn(50, 16), target=torch.full((20,), 60))
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("chunk", [0, -3, 2.5, "big", True])
def test_a_chunk_that_is_not_a_row_count_is_an_input_error(chunk) -> None:
    with pytest.raises(lossdsl.InputError, match="chunk"):
        lossdsl.load("cross_entropy", chunk=chunk)


@needs_one_compilation_across_sizes
def test_compiled_slices_compile_each_graph_once_across_slices_and_shapes() -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    reference = lossdsl.load_text(HEAD)
    sliced = lossdsl.load_text(HEAD, chunk=5, compile=True, backend="aot_eager")
    for rows in (13, 11, 23, 17):  # 11 and 17 leave uneven last slices
        assert_same_run(reference, sliced, head_inputs(torch.float32, rows=rows), 1e-5)
    assert counters["stats"]["unique_graphs"] == 3  # feeds, one slice, finish


def test_compiled_slices_are_lowered_as_the_compiled_module_is() -> None:
    """With compile=True a slice's graph takes the forms Inductor fuses, as the unsliced
    compiled module does: the log-probability at the target as the logit there minus the
    logsumexp, not a log_softmax, whose backward sums each row of the vocabulary again."""
    sliced = lossdsl.load_text(HEAD, chunk=4, compile=True, backend="aot_eager")
    assert_same_run(lossdsl.load_text(HEAD), sliced, head_inputs(torch.float32), 1e-5)
    (parts,) = sliced._graph._parts.values()
    code = parts.one_slice.graph._eager.__self__.code
    assert "logsumexp" in code and "log_softmax" not in code
    eager = lossdsl.load_text(HEAD, chunk=4)
    eager(**head_inputs())
    (parts,) = eager._graph._parts.values()
    assert "log_softmax" in parts.one_slice.graph.__self__.code


@needs_one_compilation_across_sizes
def test_two_compiled_passes_compile_nothing_new_for_other_slices_and_shapes() -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    reference = lossdsl.load_text(PAIRS)
    sliced = lossdsl.load_text(PAIRS, chunk=2, compile=True, backend="aot_eager")
    compiled = []
    for seed, (b, t) in enumerate([(3, 5), (4, 7), (2, 3)]):  # uneven last slices
        SIZES.update(B=b, T=t)
        try:
            inputs = random_inputs(reference, torch.float32, seed=seed)
        finally:
            SIZES.update(B=B, T=T)
        assert_same_run(reference, sliced, inputs, 1e-5)
        compiled.append(counters["stats"]["unique_graphs"])
    assert compiled[0] > 0 and compiled == [compiled[0]] * 3


@pytest.mark.inductor
def test_sliced_ppo_runs_under_inductor() -> None:
    reference = lossdsl.load("ppo")
    sliced = lossdsl.load("ppo", chunk=4, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_run(reference, sliced, random_inputs(reference, torch.float32), 1e-5)
    assert math.isfinite(float(sliced(**random_inputs(reference, torch.float32)).loss.detach()))


@pytest.mark.inductor
@needs_one_compilation_across_sizes
def test_sliced_heads_under_inductor_compile_once_with_uneven_and_one_row_slices() -> None:
    """Inductor, not only AOT: GRPO and DPO from hidden states and heads, one pass and two,
    slices `[1, rows, H]` of sequences down to a single row, and new batch sizes."""
    from torch._dynamo.utils import counters

    for name in ("grpo", "dpo"):
        torch._dynamo.reset()
        counters.clear()
        reference = lossdsl.load(name)
        given = FROM_HEADS[[n for n, _ in FROM_HEADS].index(name)][1]
        variant = lossdsl.build_ir(name, computed=reference.ir.derivations.computed_for(given))
        sliced = lossdsl.load(name, chunk=2, compile=True)
        compiled = []
        for seed, (b, t) in enumerate([(3, 5), (4, 7)]):  # slices of 2, 2 and 1 rows
            SIZES.update(B=b, T=t, Tc=t, Tr=t + 1)
            try:
                inputs = random_inputs(reference, torch.float32, seed=seed, ir=variant)
            finally:
                SIZES.update(B=B, T=T, Tc=T, Tr=T + 1)
            assert_same_run(reference, sliced, inputs, 1e-5)
            compiled.append(counters["stats"]["unique_graphs"])
        assert compiled[0] > 0 and compiled == [compiled[0]] * 2, name
    torch._dynamo.reset()
    counters.clear()
    sliced = lossdsl.load_text(HEAD, chunk=5, compile=True)
    for rows in (13, 11, 1):  # `[V, rows]` heads of rows `[N]`: uneven, and one row
        assert_same_run(lossdsl.load_text(HEAD), sliced, head_inputs(torch.float32, rows), 1e-5)
    assert counters["stats"]["unique_graphs"] == 3  # feeds, one slice, finish


@needs_one_compilation_across_sizes
def test_an_unsliced_compiled_linear_head_compiles_once_across_row_counts() -> None:
    """The backward of a contraction over an unbacked dim cannot be compiled; H stays backed."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    reference = lossdsl.load_text(HEAD)
    compiled = lossdsl.load_text(HEAD, compile=True, backend="aot_eager")
    for rows in (13, 11, 17):
        assert_same_run(reference, compiled, head_inputs(torch.float32, rows=rows), 1e-5)
    assert counters["stats"]["unique_graphs"] == 1


def test_a_second_backward_through_one_sliced_call_is_an_error_not_doubled_gradients() -> None:
    """The slices' gradients are scaled in place in the backward (no copy of the head's
    gradient); a second backward would scale them again, so it is refused."""
    sliced = lossdsl.load_text(HEAD, chunk=4)
    inputs = head_inputs()
    loss = sliced(**inputs).loss
    loss.backward(retain_graph=True)
    first = inputs["head"].grad.clone()
    with pytest.raises(RuntimeError, match="runs once"):
        loss.backward()
    again = head_inputs()
    sliced(**again).loss.backward()  # a new call differentiates as the first did
    torch.testing.assert_close(again["head"].grad, first)
