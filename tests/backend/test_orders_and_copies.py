"""`sort`, `cumsum` and `rename`: values and gradients equal torch's, in float64."""

from __future__ import annotations

import textwrap

import pytest
import torch

import lossdsl
from lossdsl.passes import check_text
from tests.support import needs_one_compilation_across_sizes

F64 = torch.float64


def load(body: str) -> torch.nn.Module:
    return lossdsl.load_text(textwrap.dedent(body).lstrip())


def test_sort_gives_torchs_sorted_values_and_sends_the_gradient_back_where_each_came_from():
    fn = load(
        """
        loss sorted
        input x : float[B, T] grad
        input w : float[B, T]
        term t = sum(sort(x, dim=B) * w) + sum(sort(x, dim=T, descending=true) * w)
        """
    )
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, dtype=F64, generator=g, requires_grad=True)
    w = torch.randn(5, 3, dtype=F64, generator=g)
    out = fn(x=x, w=w)
    expected = (torch.sort(x, 0).values * w).sum() + (torch.sort(x, 1, True).values * w).sum()
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=0)
    got, want = torch.autograd.grad(out.loss, x)[0], torch.autograd.grad(expected, x)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


def test_cumsum_runs_along_its_dim_and_counts_a_mask_as_an_integer():
    fn = load(
        """
        loss running
        input x : float[B, T] grad
        input m : bool[B, T]
        term t = sum(square(cumsum(x, dim=T)))
        metric position = cumsum(m, dim=T)
        """
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, dtype=F64, generator=g, requires_grad=True)
    m = torch.rand(2, 6, generator=g) > 0.4
    out = fn(x=x, m=m)
    expected = torch.cumsum(x, 1).square().sum()
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        torch.autograd.grad(out.loss, x)[0], torch.autograd.grad(expected, x)[0]
    )
    assert out.metrics["position"].dtype == torch.int64
    assert torch.equal(out.metrics["position"], torch.cumsum(m, 1))


GRAM = """
loss gram
input z      : float[N, D] grad
input labels : int[N]
let self_pair = one_hot(index(N), K) > 0          # uses K before the rename below
let sim       = matmul(z, rename(z, N, K), dim=D)
let column    = sum(where(self_pair, rename(labels, N, K), 0), dim=K, keepdim=true)
term off_diagonal = sum(where(self_pair, 0, square(sim)))
metric same_label = column == rename(labels, N, K)
metric copies     = size(K)
"""


def test_rename_compares_a_batch_with_itself_and_the_gradient_reaches_both_copies():
    fn = load(GRAM)
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 3, dtype=F64, generator=g, requires_grad=True)
    labels = torch.tensor([3, 1, 3, 0])
    out = fn(z=z, labels=labels)
    sim = z @ z.T
    expected = (sim.square() * (1 - torch.eye(4, dtype=F64))).sum()
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        torch.autograd.grad(out.loss, z)[0], torch.autograd.grad(expected, z)[0]
    )
    assert torch.equal(out.metrics["same_label"], labels[:, None] == labels[None, :])
    assert out.metrics["copies"].item() == 4


def over_batch_sizes(text: str):
    """The spec `text` (inputs `z : float[N, 3]`, `labels : int[N]`) compiled and eager at
    three batch sizes: each size's labels and the two outputs, and the compiled module,
    after asserting that it compiled once for all of them."""
    from tests.support import CountingBackend

    backend = CountingBackend()
    fn = lossdsl.load_text(text, compile=True, backend=backend)
    eager = lossdsl.load_text(text)
    runs = []
    for n in (4, 6, 9):
        z = torch.randn(n, 3, dtype=F64)
        labels = torch.randint(0, 3, (n,))
        runs.append((labels, fn(z=z, labels=labels), eager(z=z, labels=labels)))
    assert backend.compilations == 1
    return runs, fn


@needs_one_compilation_across_sizes
def test_a_renamed_spec_compiles_once_for_new_batch_sizes():
    runs, _ = over_batch_sizes(textwrap.dedent(GRAM).lstrip())
    for _, got, want in runs:
        torch.testing.assert_close(got.loss, want.loss)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("let c = rename(z, N, D)", "introduces a new dim, and D is a dim of the inputs"),
        ("let c = rename(z, N, K) + 0\nlet e = rename(z, D, K)", "K is a copy of N"),
        ("let c = rename(z, M, K)", "unknown dim `M`"),
        ("let c = rename(z, N, 3)", "expects the name of the new dim"),
    ],
)
def test_a_new_dim_is_new_and_a_copy_of_one_dim_only(line, message):
    text = f"loss bad\ninput z : float[N, D] grad\n{line}\nterm t = sum(z)\n"
    found = [d for d in check_text(text).diagnostics if d.severity == "error"]
    assert [d.code for d in found] == ["E104"], [d.render() for d in found]
    assert message in found[0].message


def test_rename_keeps_a_mask_a_mask():
    fn = load(
        """
        loss masks
        input z : float[N] grad
        input m : bool[N]
        term t = sum(z, where=m)
        metric copied = count(rename(m, N, K))
        """
    )
    out = fn(z=torch.ones(3), m=torch.tensor([True, False, True]))
    assert out.metrics["copied"].item() == 2


@needs_one_compilation_across_sizes
def test_compiled_one_hot_of_class_indices_compiles_once_beside_an_integer_metric():
    """Compiled, `one_hot` compares with the positions: torch's one_hot reads its indices
    (a data-dependent size), which recompiled per batch size and, beside an int-valued
    output, failed (PendingUnbackedSymbolNotFound)."""
    text = (
        "loss g\ninput z : float[N, D] grad\ninput labels : int[N] in [0, D)\n"
        "term t = sum(where(one_hot(labels, D) > 0, 0, square(z)))\nmetric m = labels\n"
    )
    runs, fn = over_batch_sizes(text)
    for labels, got, want in runs:
        torch.testing.assert_close(got.loss, want.loss)
        assert torch.equal(got.metrics["m"], labels)
    with pytest.raises(lossdsl.InputError, match="class index outside"):
        fn(z=torch.randn(2, 3, dtype=F64), labels=torch.tensor([0, 3]))


def test_a_new_dim_may_be_introduced_through_a_def():
    fn = load(
        """
        loss through_a_def
        input z : float[N, D] grad
        def copy(x, N, K) = rename(x, N, K)
        def gram(x, N, K, D) = matmul(x, copy(x, N, K), dim=D)
        term t = sum(where(one_hot(index(N), M) > 0, 0, gram(z, N, M, D)))
        """
    )
    z = torch.randn(3, 2, dtype=F64)
    expected = (z @ z.T).sum() - (z * z).sum()
    torch.testing.assert_close(fn(z=z).loss, expected, rtol=1e-12, atol=1e-12)
