"""specs/preference/dpo_variants.loss against references written from the cited papers'
formulas (and TRL 1.16's `DPOTrainer` where it fixes a detail the papers leave open, such
as IPO's per-token scores), in float64 to 1e-10: values and the gradients of both
policies' per-token log-probs. Masks are ragged (responses of different lengths, padding
inside the batch), and one pair has two empty responses.
"""

from __future__ import annotations

import math

import pytest
import torch

import lossdsl
from tests.test_stdlib_classic import assert_close_relative

F64 = torch.float64
Tensor = torch.Tensor

TYPES = [
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sigmoid_norm", "sft",
]  # fmt: skip
SCORED = ["sigmoid", "hinge", "ipo", "exo_pair", "robust", "discopop", "sigmoid_norm"]
DEFAULTS = {
    "beta": 0.1,
    "label_smoothing": 0.0,
    "exo_epsilon": 1e-3,
    "discopop_tau": 0.05,
    "f_alpha_divergence_coef": 1.0,
    "ld_alpha": 1.0,
    "f_divergence_type": "reverse_kl",
    "use_weighting": "off",
}


def batch(seed: int = 0, all_masked_row: bool = True) -> dict[str, Tensor]:
    """Four pairs, chosen [4, 6] and rejected [4, 5] tokens, ragged masks with a gap; the
    last pair has two empty responses when `all_masked_row`."""
    gen = torch.Generator().manual_seed(seed)

    def logps(*shape: int) -> Tensor:
        return -3 * torch.rand(*shape, generator=gen, dtype=F64)

    chosen_mask = torch.tensor(
        [[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0], [1, 1, 1, 0, 0, 0]]
    ).bool()
    rejected_mask = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    ).bool()
    if all_masked_row:
        chosen_mask[3] = False
        rejected_mask[3] = False
    # log Σ π² <= log max π <= 0: a value a little below the token's own log-prob
    return {
        "chosen_token_logps": logps(4, 6),
        "rejected_token_logps": logps(4, 5),
        "ref_chosen_token_logps": logps(4, 6),
        "ref_rejected_token_logps": logps(4, 5),
        "chosen_mask": chosen_mask,
        "rejected_mask": rejected_mask,
        "chosen_log_sum_sq_probs": logps(4, 6),
        "rejected_log_sum_sq_probs": logps(4, 5),
    }


# ---- the reference ---------------------------------------------------------------------------


def sequence_logp(tokens: Tensor, mask: Tensor, other_mask: Tensor, ld_alpha: float) -> Tensor:
    """Σ over the response's tokens; LD-DPO (Liu et al. 2024): the tokens past the shorter
    response of the pair count ld_alpha times."""
    rows = []
    for b in range(tokens.shape[0]):
        shared = min(int(mask[b].sum()), int(other_mask[b].sum()))
        total, position = torch.zeros((), dtype=F64), 0
        for t in range(tokens.shape[1]):
            if mask[b, t]:
                position += 1
                total = total + tokens[b, t] * (1.0 if position <= shared else ld_alpha)
        rows.append(total)
    return torch.stack(rows)


def f_score(r: Tensor, kind: str, alpha: float) -> Tensor:
    """f'(u) at u = π/π_ref = e^r (Wang et al. 2023, Table 1)."""
    u = torch.exp(r)
    if kind == "reverse_kl":  # f(u) = u log u: f'(u) = log u + 1, the 1 cancels in a difference
        return torch.log(u)
    if kind == "forward_kl":  # f(u) = -log u: f'(u) = -1/u, shifted by 1 as TRL; e^-r capped
        return 1 - torch.exp(torch.clamp(-r, max=80.0))
    if kind == "js_divergence":  # f'(u) = log(2u / (1 + u))
        return torch.log(2 * u / (1 + u))
    if abs(alpha - 1) < 1e-6:
        return r
    # f'(u) = (u^(α-1) - 1)/(α - 1); TRL caps the exponent at 80
    return (torch.exp(torch.clamp((alpha - 1) * r, max=80.0)) - 1) / (alpha - 1)


def bce(z: Tensor, eps: float) -> Tensor:
    """The conservative DPO loss (Mitchell 2023): -(1-ε) log σ(z) - ε log σ(-z)."""
    return -(1 - eps) * torch.log(torch.sigmoid(z)) - eps * torch.log(torch.sigmoid(-z))


def per_pair_losses(kind: str, x: dict[str, Tensor], p: dict) -> Tensor:
    beta, eps, alpha = p["beta"], p["label_smoothing"], p["ld_alpha"]
    cm, rm = x["chosen_mask"], x["rejected_mask"]
    pc = sequence_logp(x["chosen_token_logps"], cm, rm, alpha)
    pr = sequence_logp(x["rejected_token_logps"], rm, cm, alpha)
    rc = sequence_logp(x["ref_chosen_token_logps"], cm, rm, alpha)
    rr = sequence_logp(x["ref_rejected_token_logps"], rm, cm, alpha)
    c, j = pc - rc, pr - rr
    sc = f_score(c, p["f_divergence_type"], p["f_alpha_divergence_coef"])
    sj = f_score(j, p["f_divergence_type"], p["f_alpha_divergence_coef"])
    z = beta * (sc - sj)
    n_c, n_r = cm.sum(1).clamp(min=1), rm.sum(1).clamp(min=1)
    sigma = torch.sigmoid
    if kind == "sigmoid":  # Rafailov et al. Eq. 7 with cDPO's ε
        return bce(z, eps)
    if kind == "hinge":
        return torch.clamp(1 - z, min=0)
    if kind == "ipo":  # Azar et al. Eq. 17 on per-token scores
        return (sc / n_c - sj / n_r - 1 / (2 * beta)) ** 2
    if kind == "exo_pair":  # Ji et al. Eq. 16: KL(p_θ ‖ p_rh) over {chosen, rejected}
        e = p["exo_epsilon"]
        q = torch.stack([sigma(z), sigma(-z)])
        target = torch.tensor([1 - e, e], dtype=F64)[:, None]
        return (q * (torch.log(q) - torch.log(target))).sum(0)
    if kind == "nca_pair":  # Chen et al., the pairwise NCA
        return (
            -torch.log(sigma(beta * c))
            - 0.5 * torch.log(sigma(-beta * c))
            - 0.5 * torch.log(sigma(-beta * j))
        )
    if kind == "robust":  # Chowdhury et al.: the unbiased estimate under label noise ε
        return ((1 - eps) * -torch.log(sigma(z)) + eps * torch.log(sigma(-z))) / (1 - 2 * eps)
    if kind == "sppo_hard":  # Wu et al. Eq. 4.7, P = 1 for the winner
        return (c - 1 / (2 * beta)) ** 2 + (j + 1 / (2 * beta)) ** 2
    if kind == "aot":  # Melnyk et al.: sorted policy margins against sorted reference margins
        return bce(beta * (torch.sort(pc - pr).values - torch.sort(rc - rr).values), eps)
    if kind == "aot_unpaired":
        return bce(beta * (torch.sort(c).values - torch.sort(j).values), eps)
    if kind == "apo_zero":  # D'Oosterlinck et al. Eq. 7
        return 1 - sigma(beta * c) + sigma(beta * j)
    if kind == "apo_down":  # Eq. 8
        return sigma(beta * c) + 1 - sigma(beta * (c - j))
    if kind == "discopop":  # Lu et al. Eq. 5, the log-ratio modulated loss
        m = sigma(z / p["discopop_tau"])
        return -torch.log(sigma(z)) * (1 - m) + torch.exp(-z) * m
    if kind == "sigmoid_norm":
        return -torch.log(sigma(beta * (sc / n_c - sj / n_r)))
    if kind == "sft":  # -mean log π over every chosen token of the batch, for each pair
        tokens = x["chosen_token_logps"][cm]
        value = -tokens.mean() if tokens.numel() else torch.zeros((), dtype=F64)
        return value.expand(cm.shape[0])
    raise AssertionError(kind)


def wpo_weights(x: dict[str, Tensor]) -> Tensor:
    """Zhou et al. Eq. 2: w = exp(mean_t log π(y_t) - log Σ_v π(v)²), per response, w_c·w_r."""

    def one(logps: Tensor, log_sum_sq: Tensor, mask: Tensor) -> Tensor:
        aligned = ((logps.detach() - log_sum_sq) * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.exp(aligned)

    return one(x["chosen_token_logps"], x["chosen_log_sum_sq_probs"], x["chosen_mask"]) * one(
        x["rejected_token_logps"], x["rejected_log_sum_sq_probs"], x["rejected_mask"]
    )


def reference_loss(types: list[str], weights: list[float], x: dict[str, Tensor], p: dict):
    total = torch.zeros((), dtype=F64)
    for kind, weight in zip(types, weights, strict=True):
        losses = per_pair_losses(kind, x, p)
        if p["use_weighting"] == "on":
            losses = losses * wpo_weights(x)
        total = total + weight * losses.mean()
    return total


# ---- the comparison ----------------------------------------------------------------------------

GRAD = ("chosen_token_logps", "rejected_token_logps")


def compare(types: list[str], weights: list[float], options: dict, x: dict[str, Tensor]):
    p = {**DEFAULTS, **options}
    names = ["loss_type", "second_loss_type", "third_loss_type"]
    weight_names = ["loss_weight", "second_loss_weight", "third_loss_weight"]
    chosen = dict(zip(names, types, strict=False))  # the types not given stay "none"
    params = {**options, **chosen, **dict(zip(weight_names, weights, strict=False))}
    ours = {k: v.clone().requires_grad_(k in GRAD) for k, v in x.items()}
    theirs = {k: v.clone().requires_grad_(k in GRAD) for k, v in x.items()}
    needed = (
        dict(ours)
        if p["use_weighting"] == "on"
        else {k: v for k, v in ours.items() if "sum_sq" not in k}
    )
    out = lossdsl.load("dpo_variants", params=params)(**needed)
    expected = reference_loss(types, weights, theirs, p)
    what = f"{types} {options}"
    assert_close_relative(out.loss, expected.detach(), f"{what} loss")
    # sft reads no rejected token: its gradient is zero
    unused = {"allow_unused": True, "materialize_grads": True}
    got = torch.autograd.grad(out.loss, [ours[k] for k in GRAD], **unused)
    want = torch.autograd.grad(expected, [theirs[k] for k in GRAD], **unused)
    for name, g, w in zip(GRAD, got, want, strict=True):
        assert_close_relative(g, w, f"{what} d loss / d {name}")
        masked = ~x[name.replace("token_logps", "mask")]
        assert (g[masked] == 0).all(), f"{what}: a masked token got a gradient"
    return out


@pytest.mark.parametrize("kind", TYPES)
def test_each_loss_type_matches_its_paper(kind):
    compare([kind], [1.0], {}, batch(0))


@pytest.mark.parametrize("kind", ["sigmoid", "robust", "aot", "aot_unpaired"])
def test_label_smoothing_is_the_conservative_loss(kind):
    """TRL 1.16 ignores label_smoothing for sigmoid; the spec keeps cDPO's formula."""
    compare([kind], [1.0], {"label_smoothing": 0.2}, batch(1))


@pytest.mark.parametrize("kind", SCORED)
@pytest.mark.parametrize(
    "divergence",
    [
        {"f_divergence_type": "forward_kl"},
        {"f_divergence_type": "js_divergence"},
        {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 0.5},
        {"f_divergence_type": "alpha_divergence", "f_alpha_divergence_coef": 1.0},
    ],
    ids=["forward_kl", "js", "alpha=0.5", "alpha=1"],
)
def test_f_divergence_scores(kind, divergence):
    compare([kind], [1.0], {"beta": 0.5, **divergence}, batch(2))


@pytest.mark.parametrize("kind", ["sigmoid", "ipo", "aot", "sppo_hard", "nca_pair"])
@pytest.mark.parametrize("ld_alpha", [0.0, 0.5])
def test_ld_alpha_weighs_the_tokens_past_the_shorter_response(kind, ld_alpha):
    compare([kind], [1.0], {"ld_alpha": ld_alpha}, batch(3))


@pytest.mark.parametrize("kind", ["sigmoid", "ipo", "apo_down", "sft"])
def test_wpo_weights_each_pair_without_a_gradient_through_the_weights(kind):
    compare([kind], [1.0], {"use_weighting": "on"}, batch(4))


@pytest.mark.parametrize(
    ("types", "weights"),
    [
        (["sigmoid", "sft"], [0.8, 1.0]),
        (["sigmoid", "apo_zero", "sft"], [0.8, 0.2, 1.0]),
        (["hinge", "discopop", "exo_pair"], [1.0, 0.5, 2.0]),
    ],
)
def test_several_types_combine_with_weights_as_trl_loss_weights(types, weights):
    out = compare(types, weights, {"beta": 0.3}, batch(5))
    assert set(out.terms) == {"first", "second", "third"}


def test_an_unused_second_type_is_zero_and_the_wpo_inputs_are_not_needed():
    x = {k: v for k, v in batch(6).items() if "sum_sq" not in k}
    out = lossdsl.load("dpo_variants")(**x)
    assert out.terms["second"].item() == 0.0 and out.terms["third"].item() == 0.0


def test_sft_of_a_batch_without_chosen_tokens_is_zero():
    x = batch(7)
    x["chosen_mask"] = torch.zeros_like(x["chosen_mask"])
    x = {k: v for k, v in x.items() if "sum_sq" not in k}
    out = lossdsl.load("dpo_variants", params={"loss_type": "sft"})(**x)
    assert out.loss.item() == 0.0


def test_without_options_sigmoid_equals_the_dpo_spec():
    x = batch(8, all_masked_row=False)
    sums = {
        name: (x[f"{name}_token_logps"] * x[mask]).sum(1)
        for name, mask in [
            ("chosen", "chosen_mask"),
            ("rejected", "rejected_mask"),
            ("ref_chosen", "chosen_mask"),
            ("ref_rejected", "rejected_mask"),
        ]
    }
    dpo = lossdsl.load("dpo")(
        policy_chosen_logps=sums["chosen"],
        policy_rejected_logps=sums["rejected"],
        reference_chosen_logps=sums["ref_chosen"],
        reference_rejected_logps=sums["ref_rejected"],
    )
    ours = lossdsl.load("dpo_variants")(**{k: v for k, v in x.items() if "sum_sq" not in k})
    assert_close_relative(ours.loss, dpo.loss, "dpo_variants sigmoid vs dpo")
    for name in ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy"):
        assert_close_relative(ours.metrics[name], dpo.metrics[name], name)


def test_exo_at_equal_policies_is_the_kl_from_one_half():
    """z = 0: q = (½, ½), KL(q ‖ (1-ε, ε)) = -log 2 - ½ log(ε (1-ε))."""
    x = batch(9)
    x["ref_chosen_token_logps"] = x["chosen_token_logps"].clone()
    x["ref_rejected_token_logps"] = x["rejected_token_logps"].clone()
    x = {k: v for k, v in x.items() if "sum_sq" not in k}
    out = lossdsl.load("dpo_variants", params={"loss_type": "exo_pair"})(**x)
    eps = 1e-3
    assert out.loss.item() == pytest.approx(-math.log(2) - 0.5 * math.log(eps * (1 - eps)))


def test_discopop_stays_finite_where_its_exponential_overflows():
    """z = β·Δ = -1000: e^{-z} overflows float64, σ(z/τ) underflows; their product, written
    as one exp, is 0 and the loss is -logσ(z) = 1000."""
    x = {k: v for k, v in batch(10, all_masked_row=False).items() if "sum_sq" not in k}
    x["chosen_token_logps"] = x["chosen_token_logps"].clone()
    x["chosen_token_logps"][:, 0] = -20_000.0
    x["chosen_token_logps"].requires_grad_()
    out = lossdsl.load("dpo_variants", params={"loss_type": "discopop"})(**x)
    (grad,) = torch.autograd.grad(out.loss, x["chosen_token_logps"])
    assert out.loss.isfinite() and out.loss.item() > 1_000
    assert grad.isfinite().all()


def from_logits_batch(seed: int = 5) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Logits and labels (-100 where a token is not scored), and the token log-probs, masks
    and WPO inputs a caller would compute from them by hand."""
    gen = torch.Generator().manual_seed(seed)
    b, tc, tr, v = 3, 5, 4, 7
    logits = {
        name: torch.randn(b, t, v, generator=gen, dtype=F64)
        for name, t in [
            ("chosen_logits", tc),
            ("rejected_logits", tr),
            ("ref_chosen_logits", tc),
            ("ref_rejected_logits", tr),
        ]
    }
    labels = {
        "chosen_labels": torch.randint(0, v, (b, tc), generator=gen),
        "rejected_labels": torch.randint(0, v, (b, tr), generator=gen),
    }
    labels["chosen_labels"][0, 3:] = -100
    labels["rejected_labels"][1] = -100  # a response with no scored token

    def picked(x: Tensor, y: Tensor) -> Tensor:
        logp = torch.log_softmax(x, -1).gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return logp

    def sum_sq(x: Tensor) -> Tensor:
        return torch.logsumexp(2 * torch.log_softmax(x, -1), -1)

    by_hand = {
        "chosen_token_logps": picked(logits["chosen_logits"], labels["chosen_labels"]),
        "rejected_token_logps": picked(logits["rejected_logits"], labels["rejected_labels"]),
        "ref_chosen_token_logps": picked(logits["ref_chosen_logits"], labels["chosen_labels"]),
        "ref_rejected_token_logps": picked(
            logits["ref_rejected_logits"], labels["rejected_labels"]
        ),
        "chosen_mask": labels["chosen_labels"] != -100,
        "rejected_mask": labels["rejected_labels"] != -100,
        "chosen_log_sum_sq_probs": sum_sq(logits["chosen_logits"]),
        "rejected_log_sum_sq_probs": sum_sq(logits["rejected_logits"]),
    }
    return {**logits, **labels}, by_hand


@pytest.mark.parametrize("kind", ["sigmoid", "ipo", "apo_down", "sft"])
def test_from_logits_and_labels_equals_the_token_log_probs_computed_by_hand(kind):
    params = {"loss_type": kind, "use_weighting": "on"}
    given, by_hand = from_logits_batch()
    given["chosen_logits"].requires_grad_(True)
    from_logits = lossdsl.load("dpo_variants", params=params)(**given).loss
    (grad,) = torch.autograd.grad(from_logits, given["chosen_logits"])
    leaf = given["chosen_logits"].detach().requires_grad_(True)
    _, by_hand = from_logits_batch()
    by_hand["chosen_token_logps"] = (
        torch.log_softmax(leaf, -1)
        .gather(-1, given["chosen_labels"].clamp(min=0).unsqueeze(-1))
        .squeeze(-1)
    )
    expected = lossdsl.load("dpo_variants", params=params)(**by_hand).loss
    (expected_grad,) = torch.autograd.grad(expected, leaf)
    torch.testing.assert_close(from_logits, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_from_hidden_states_and_heads_sliced_equals_unsliced():
    gen = torch.Generator().manual_seed(6)
    b, tc, tr, h, v = 2, 5, 3, 4, 9
    inputs = {
        "chosen_hidden": torch.randn(b, tc, h, generator=gen, dtype=F64),
        "rejected_hidden": torch.randn(b, tr, h, generator=gen, dtype=F64),
        "head": torch.randn(v, h, generator=gen, dtype=F64),
        "ref_chosen_hidden": torch.randn(b, tc, h, generator=gen, dtype=F64),
        "ref_rejected_hidden": torch.randn(b, tr, h, generator=gen, dtype=F64),
        "ref_head": torch.randn(v, h, generator=gen, dtype=F64),
        "chosen_labels": torch.randint(0, v, (b, tc), generator=gen),
        "rejected_labels": torch.randint(0, v, (b, tr), generator=gen),
    }
    inputs["chosen_labels"][1, 2:] = -100
    results = []
    for chunk in (None, 2):
        leaves = {
            k: t.clone().requires_grad_(k in ("chosen_hidden", "rejected_hidden", "head"))
            for k, t in inputs.items()
        }
        loss = lossdsl.load("dpo_variants", chunk=chunk)(**leaves).loss
        loss.backward()
        results.append((loss, leaves["head"].grad, leaves["chosen_hidden"].grad))
    for got, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
