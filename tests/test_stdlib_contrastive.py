"""The contrastive standard library (specs/contrastive/) against references written from
the papers, in float64: InfoNCE (van den Oord et al. 2018), NT-Xent (SimCLR, Chen et al.
2020), SupCon (Khosla et al. 2020) and CLIP (Radford et al. 2021). Values and the
gradients of every `grad` input agree to 1e-10 relative to the reference's size. The
references loop over samples as the papers' sums are written; where pytorch-metric-learning
is installed, NT-Xent and SupCon are also compared with its losses.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import lossdsl
from tests.test_stdlib_classic import assert_close_relative

F64 = torch.float64
Tensor = torch.Tensor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=gen, dtype=F64)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """The cosine of two vectors, as F.normalize makes it (norms below 1e-12 count as 1e-12)."""
    return (a / a.norm().clamp_min(1e-12)) @ (b / b.norm().clamp_min(1e-12))


def assert_same_loss_and_grads(
    ours: Tensor, theirs: Tensor, ours_inputs: list[Tensor], their_inputs: list[Tensor], what: str
) -> None:
    assert_close_relative(ours, theirs.detach(), f"{what} loss")
    got = torch.autograd.grad(ours, ours_inputs)
    want = torch.autograd.grad(theirs, their_inputs)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert_close_relative(g, w, f"{what} gradient of input {i}")


def twins(*tensors: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """Two independent leaf copies of each tensor: one for lossdsl, one for the reference."""
    return (
        [t.clone().requires_grad_() for t in tensors],
        [t.clone().requires_grad_() for t in tensors],
    )


# ---- InfoNCE -------------------------------------------------------------------------------


def info_nce_reference(
    query: Tensor, positive: Tensor, negatives: list[list[Tensor]], temperature: float, reduction
) -> Tensor:
    """CPC Eq. 4 per query i: -log e^{s(q,p)/τ} / (e^{s(q,p)/τ} + Σ_n e^{s(q,n)/τ}), with
    negatives[i] the negative keys of query i."""
    losses = []
    for i in range(query.shape[0]):
        scores = [cosine(query[i], positive[i]) / temperature]
        scores += [cosine(query[i], n) / temperature for n in negatives[i]]
        stacked = torch.stack(scores)
        losses.append(-(stacked[0] - torch.logsumexp(stacked, dim=0)))
    total = torch.stack(losses).sum()
    return total / len(losses) if reduction == "mean" else total


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("temperature", [0.1, 0.7])
@pytest.mark.parametrize("negatives", ["in_batch", "unpaired", "paired"])
def test_info_nce_matches_the_cpc_formula(negatives, temperature, reduction):
    gen = _gen(0)
    query, positive = _randn(gen, 5, 4), _randn(gen, 5, 4)
    positive[0] = 3.0 * query[0]  # a perfect positive
    extra = {"unpaired": _randn(gen, 3, 4), "paired": _randn(gen, 5, 3, 4)}.get(negatives)
    tensors = (query, positive) if extra is None else (query, positive, extra)
    ours, theirs = twins(*tensors)
    if negatives == "in_batch":  # the other queries' positives
        keys = [[theirs[1][k] for k in range(5) if k != i] for i in range(5)]
    elif negatives == "unpaired":
        keys = [list(theirs[2]) for _ in range(5)]
    else:
        keys = [list(theirs[2][i]) for i in range(5)]
    expected = info_nce_reference(theirs[0], theirs[1], keys, temperature, reduction)
    names = {"unpaired": "negative_keys", "paired": "paired_negative_keys"}
    passed = {"query": ours[0], "positive_key": ours[1]}
    if extra is not None:
        passed[names[negatives]] = ours[2]
    loss_fn = lossdsl.load(
        "info_nce",
        params={"negatives": negatives, "temperature": temperature, "reduction": reduction},
    )
    out = loss_fn(**passed)
    assert_same_loss_and_grads(out.loss, expected, ours, theirs, f"info_nce {negatives}")


def test_info_nce_reads_only_the_negatives_of_its_mode():
    gen = _gen(1)
    query, positive = _randn(gen, 3, 2), _randn(gen, 3, 2)
    loss_fn = lossdsl.load("info_nce", params={"negatives": "unpaired"})
    with pytest.raises(lossdsl.InputError, match="negative_keys"):
        loss_fn(query=query, positive_key=positive)


# ---- NT-Xent -------------------------------------------------------------------------------


def simclr_nt_xent(z_i: Tensor, z_j: Tensor, temperature: float) -> Tensor:
    """SimCLR Algorithm 1: the 2N views z_1 … z_2N (view k of sample k is z_i[k], its twin
    z_j[k]); ℓ(a, b) = -log e^{s(a,b)/τ} / Σ_{k ≠ a} e^{s(a,k)/τ}, and
    L = 1/(2N) Σ_k [ℓ(2k-1, 2k) + ℓ(2k, 2k-1)]."""
    n = z_i.shape[0]
    views = [z_i[k // 2] if k % 2 == 0 else z_j[k // 2] for k in range(2 * n)]

    def ell(a: int, b: int) -> Tensor:
        others = torch.stack(
            [cosine(views[a], views[k]) / temperature for k in range(2 * n) if k != a]
        )
        return -(cosine(views[a], views[b]) / temperature - torch.logsumexp(others, dim=0))

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_nt_xent_of_two_views_is_simclrs_loss(temperature):
    gen = _gen(2)
    z_i, z_j = _randn(gen, 4, 6), _randn(gen, 4, 6)
    z_j[1] = z_i[1]  # identical views
    (oi, oj), (ti, tj) = twins(z_i, z_j)
    labels = torch.cat([torch.arange(4), torch.arange(4)])
    out = lossdsl.load("nt_xent", params={"temperature": temperature})(
        embeddings=torch.cat([oi, oj]), labels=labels
    )
    expected = simclr_nt_xent(ti, tj, temperature)
    assert_same_loss_and_grads(out.loss, expected, [oi, oj], [ti, tj], "nt_xent")
    assert out.metrics["positive_pairs"].item() == 8


def test_nt_xent_without_positive_pairs_is_zero_with_zero_gradient():
    embeddings = _randn(_gen(3), 4, 3).requires_grad_()
    out = lossdsl.load("nt_xent")(embeddings=embeddings, labels=torch.arange(4))
    assert out.loss.item() == 0.0
    (grad,) = torch.autograd.grad(out.loss, embeddings)
    assert torch.equal(grad, torch.zeros_like(grad))


def views_with_singletons(seed: int) -> tuple[Tensor, Tensor]:
    """Embeddings [9, 5]: a class of three views, two of two, two samples alone."""
    return _randn(_gen(seed), 9, 5), torch.tensor([0, 1, 0, 2, 3, 1, 0, 2, 4])


def test_nt_xent_keeps_the_other_positives_out_of_each_denominator():
    """ℓ(a, p) = -log e^{s_ap/τ} / (e^{s_ap/τ} + Σ_{n of another class} e^{s_an/τ}),
    averaged over the ordered positive pairs."""
    embeddings, labels = views_with_singletons(4)
    (ours,), (theirs,) = twins(embeddings)
    tau, losses = 0.2, []
    for a in range(9):
        negatives = [cosine(theirs[a], theirs[n]) / tau for n in range(9) if labels[n] != labels[a]]
        for p in range(9):
            if p != a and labels[p] == labels[a]:
                s = cosine(theirs[a], theirs[p]) / tau
                losses.append(-(s - torch.logsumexp(torch.stack([s, *negatives]), dim=0)))
    expected = torch.stack(losses).mean()
    out = lossdsl.load("nt_xent", params={"temperature": tau})(embeddings=ours, labels=labels)
    assert_same_loss_and_grads(out.loss, expected, [ours], [theirs], "nt_xent, 3 views")


def test_nt_xent_equals_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    embeddings, labels = views_with_singletons(5)
    (ours,), (theirs,) = twins(embeddings)
    out = lossdsl.load("nt_xent", params={"temperature": 0.1})(embeddings=ours, labels=labels)
    expected = losses.NTXentLoss(temperature=0.1)(theirs, labels)
    assert_same_loss_and_grads(out.loss, expected, [ours], [theirs], "nt_xent vs pml")


# ---- SupCon --------------------------------------------------------------------------------


def supcon_reference(embeddings: Tensor, labels: Tensor, tau: float) -> Tensor:
    """Khosla et al. Eq. 2 (L^sup_out), averaged over the anchors with a positive."""
    n, losses = embeddings.shape[0], []
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        others = torch.stack(
            [cosine(embeddings[i], embeddings[a]) / tau for a in range(n) if a != i]
        )
        log_probs = [
            cosine(embeddings[i], embeddings[p]) / tau - torch.logsumexp(others, dim=0)
            for p in positives
        ]
        losses.append(-torch.stack(log_probs).mean())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_supcon_matches_khosla_eq_2(temperature):
    embeddings, labels = views_with_singletons(6)
    (ours,), (theirs,) = twins(embeddings)
    out = lossdsl.load("supcon", params={"temperature": temperature})(
        embeddings=ours, labels=labels
    )
    expected = supcon_reference(theirs, labels, temperature)
    assert_same_loss_and_grads(out.loss, expected, [ours], [theirs], "supcon")
    assert out.metrics["anchors_with_positives"].item() == 7


def test_supcon_equals_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    embeddings, labels = views_with_singletons(7)
    (ours,), (theirs,) = twins(embeddings)
    out = lossdsl.load("supcon")(embeddings=ours, labels=labels)
    expected = losses.SupConLoss(temperature=0.1)(theirs, labels)
    assert_same_loss_and_grads(out.loss, expected, [ours], [theirs], "supcon vs pml")


def test_supcon_and_nt_xent_agree_with_two_views_per_sample_but_not_three():
    """With two views every anchor has one positive: the denominators are the same sets."""
    gen = _gen(8)
    embeddings = _randn(gen, 6, 4)
    two = torch.tensor([0, 1, 2, 0, 1, 2])
    three = torch.tensor([0, 0, 0, 1, 1, 1])
    nt_xent, supcon = lossdsl.load("nt_xent"), lossdsl.load("supcon", params={"temperature": 0.07})
    got = supcon(embeddings=embeddings, labels=two).loss
    assert_close_relative(got, nt_xent(embeddings=embeddings, labels=two).loss, "two views")
    assert not torch.isclose(
        supcon(embeddings=embeddings, labels=three).loss,
        nt_xent(embeddings=embeddings, labels=three).loss,
    )


# ---- CLIP ----------------------------------------------------------------------------------


def clip_reference(images: Tensor, texts: Tensor, logit_scale: Tensor) -> Tensor:
    """CLIP Figure 3: logits = (I_e · T_eᵀ) e^t over normalised embeddings;
    (CE over rows + CE over columns) / 2, each against the diagonal."""
    i_e = torch.stack([v / v.norm() for v in images])
    t_e = torch.stack([v / v.norm() for v in texts])
    logits = (i_e @ t_e.T) * logit_scale.exp()
    labels = torch.arange(images.shape[0])
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@pytest.mark.parametrize("logit_scale", [math.log(1 / 0.07), 0.0, 4.0])
def test_clip_matches_figure_3_with_a_learned_scale(logit_scale):
    gen = _gen(9)
    images, texts = _randn(gen, 5, 8), _randn(gen, 5, 8)
    scale = torch.tensor(logit_scale, dtype=F64)
    ours, theirs = twins(images, texts, scale)
    out = lossdsl.load("clip")(image_features=ours[0], text_features=ours[1], logit_scale=ours[2])
    expected = clip_reference(*theirs)
    assert_same_loss_and_grads(out.loss, expected, ours, theirs, "clip")


def test_clip_starts_at_the_papers_temperature_when_no_scale_is_passed():
    gen = _gen(10)
    images, texts = _randn(gen, 4, 3), _randn(gen, 4, 3)
    out = lossdsl.load("clip")(image_features=images, text_features=texts)
    # the module's learned scale is a float32 parameter: log(1/0.07) to float32's precision
    start = torch.tensor(math.log(1 / 0.07), dtype=torch.float32).to(F64)
    expected = clip_reference(images, texts, start)
    assert_close_relative(out.loss, expected, "clip at log(1/0.07)")
    assert out.metrics["scale_value"].item() == pytest.approx(1 / 0.07, rel=1e-7)


def test_clip_left_without_a_scale_learns_its_own_and_trains_it():
    """The module's `learned_logit_scale` gets the gradient the passed scale would get, and an
    optimizer over the module's parameters moves it."""
    gen = _gen(13)
    images, texts = _randn(gen, 6, 4), _randn(gen, 6, 4)
    loss_fn = lossdsl.load("clip")
    learned = dict(loss_fn.named_parameters())["learned.learned_logit_scale"]
    start = learned.item()
    assert start == pytest.approx(math.log(1 / 0.07), rel=1e-7)  # a float32 parameter
    loss_fn(image_features=images, text_features=texts).loss.backward()
    scale = torch.tensor(start, dtype=F64, requires_grad=True)
    (expected,) = torch.autograd.grad(clip_reference(images, texts, scale), scale)
    assert learned.grad.item() == pytest.approx(expected.item(), rel=1e-6)  # float32
    torch.optim.SGD(loss_fn.parameters(), lr=0.1).step()
    assert learned.item() == pytest.approx(start - 0.1 * expected.item(), rel=1e-6)


def test_clip_scale_stops_at_max_scale():
    gen = _gen(11)
    images, texts = _randn(gen, 4, 3), _randn(gen, 4, 3)
    scale = torch.tensor(6.0, dtype=F64, requires_grad=True)  # e^6 > 100
    out = lossdsl.load("clip")(image_features=images, text_features=texts, logit_scale=scale)
    expected = clip_reference(images, texts, torch.tensor(math.log(100.0), dtype=F64))
    assert_close_relative(out.loss, expected, "clip clipped at 100")
    (grad,) = torch.autograd.grad(out.loss, scale)
    assert grad.item() == 0.0


def test_clip_accuracy_counts_pairs_that_score_highest_in_their_row_and_column():
    gen = _gen(12)
    texts = _randn(gen, 4, 6)
    images = texts.clone()
    images[0] = texts[1]  # image 0 matches text 1 better than its own
    out = lossdsl.load("clip")(image_features=images, text_features=texts)
    assert out.metrics["image_accuracy"].item() == pytest.approx(3 / 4)
    assert out.metrics["text_accuracy"].item() == pytest.approx(3 / 4)
