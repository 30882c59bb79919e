"""Plain-PyTorch reference implementations of the RL, preference and SFT losses.

Written directly from the papers' equations and the frameworks' code (TRL, verl,
NeMo RL), independently of lossdsl, to check the specs in `specs/rl`,
`specs/preference` and `specs/sft` against. Each function's docstring names its
source. Every function takes the spec's inputs and params as keyword arguments
(the same names) and returns a dict with `loss` and one entry per term and
metric of the spec (same names), so the tests can compare them one by one.

Conventions shared by every function (and by the specs):

* Masked means are `sum(x over mask) / max(count(mask), 1)`: an all-masked
  sequence or batch gives 0, never NaN (frameworks divide by the raw count,
  or add 1e-8; the two agree whenever the mask is not empty).
* Sequence-level means (`seq_mean_*`) average over the sequences with at least
  one unmasked token (NeMo RL's `sample_mask` semantics; verl 0.9.1's `agg_loss` when
  no `global_batch_size` is given). TRL averages over every row of the batch; the
  two agree whenever no row is fully masked, and ours makes "masking a sample =
  dropping it" hold for every mode.
* Everything is one process, one batch: the distributed tests
  (tests/runtime/test_distributed.py) check that ranks and micro-batches add up to it.
* Importance ratios are `exp(clamp(logp - old_logp, -20, 20))`, as verl's
  `compute_policy_loss_vanilla`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

AGG_MODES = (
    "token_mean",
    "token_sum",
    "seq_mean_token_mean",
    "seq_mean_token_sum",
    "seq_mean_token_sum_norm",
)
KL_TYPES = ("k1", "k2", "k3", "abs", "k1_plus", "k3_plus")
POLICY_LOSSES = ("vanilla", "gpg", "cispo", "sapo", "dppo_tv", "dppo_kl")
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "robust", "sppo_hard", "nca_pair", "apo_zero")


# --------------------------------------------------------------------------- helpers


def masked_sum(x: Tensor, mask: Tensor, dim=None) -> Tensor:
    m = mask.bool()
    z = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return z.sum() if dim is None else z.sum(dim)


def masked_mean(x: Tensor, mask: Tensor, dim=None) -> Tensor:
    """sum(x·m) / max(count(m), 1): 0 on an empty mask (verl_F.masked_mean without NaN)."""
    m = mask.bool()
    count = m.sum() if dim is None else m.sum(dim)
    return masked_sum(x, m, dim) / count.clamp(min=1).to(x.dtype)


def masked_min(x: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask.bool(), x, torch.full((), math.inf, dtype=x.dtype)).min()


def masked_max(x: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask.bool(), x, torch.full((), -math.inf, dtype=x.dtype)).max()


def agg_loss(loss_mat: Tensor, mask: Tensor, mode: str, loss_scale_factor: float = 0) -> Tensor:
    """verl 0.9.1 `core_algos.agg_loss` (loss_agg_mode with `-` spelled `_`), dp_size 1.

    token_mean:               Σ_bt x·m / Σ_bt m
    token_sum:                Σ_bt x·m
    seq_mean_token_mean:      mean over non-empty sequences of (Σ_t x·m / Σ_t m)
    seq_mean_token_sum:       mean over non-empty sequences of Σ_t x·m
    seq_mean_token_sum_norm:  seq_mean_token_sum / loss_scale_factor (T =
                              loss_mask.shape[-1] when none is given: 0 here)
    """
    m = mask.bool()
    x = loss_mat.expand(m.shape)
    if mode == "token_mean":
        return masked_mean(x, m)
    if mode == "token_sum":
        return masked_sum(x, m)
    seq_sum = masked_sum(x, m, dim=-1)
    seq_count = m.sum(-1)
    n_seq = (seq_count > 0).sum().clamp(min=1).to(x.dtype)
    if mode == "seq_mean_token_mean":
        return (seq_sum / seq_count.clamp(min=1).to(x.dtype)).sum() / n_seq
    if mode == "seq_mean_token_sum":
        return seq_sum.sum() / n_seq
    if mode == "seq_mean_token_sum_norm":
        factor = loss_scale_factor if loss_scale_factor > 0 else m.shape[-1]
        return seq_sum.sum() / n_seq / factor
    raise ValueError(mode)


def linear_schedule(start: float, end: float, steps: float, step: float, begin: float = 0.0):
    u = min(max((step - begin) / steps, 0.0), 1.0)
    return start + (end - start) * u


def log_ratio(logp: Tensor, old_logp: Tensor) -> Tensor:
    """verl compute_policy_loss_vanilla: negative_approx_kl clamped to [-20, 20]."""
    return torch.clamp(logp - old_logp, min=-20.0, max=20.0)


def clipped_surrogate(ratio: Tensor, adv: Tensor, clip_low: float, clip_high: float) -> Tensor:
    """Per-token PPO loss max(-A·r, -A·clip(r, 1-ε_low, 1+ε_high)).

    Schulman et al. 2017 (arXiv:1707.06347) Eq. 7, negated; asymmetric ε from DAPO
    (Yu et al. 2025, arXiv:2503.14476, Eq. 10) as in verl `compute_policy_loss_vanilla`.
    """
    pg1 = -adv * ratio
    pg2 = -adv * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    return torch.maximum(pg1, pg2)


def kl_estimate(
    logp: Tensor,
    ref_logp: Tensor,
    kl_type: str,
    input_clamp: float | None = 20.0,
    output_clamp: float | None = 10.0,
) -> Tensor:
    """NeMo RL `nemo_rl/algorithms/utils.py::calculate_kl` (Schulman 2020,
    joschu.net/blog/kl-approx).

    logr = clamp(ref - logp, ±20); k1 = -logr; k2 = logr²/2; k3 = exp(logr) - 1 - logr;
    output clamped to ±10. (verl `kl_penalty_forward` clamps only k3 this way.)
    verl 0.9.1 `kl_penalty`: "abs" = |log π - log π_ref| (here |k1|, so with k1's clamps);
    "k1+" / "k3+" (k1_plus, k3_plus): straight-through, the forward value of k1 / k3 and
    the gradient of k2 = ½(log π - log π_ref)² without clamps.
    """
    if kl_type == "abs":
        return kl_estimate(logp, ref_logp, "k1", input_clamp, output_clamp).abs()
    if kl_type.endswith("_plus"):
        forward = kl_estimate(logp, ref_logp, kl_type[:2], input_clamp, output_clamp)
        backward = 0.5 * (logp - ref_logp).square()
        return backward - backward.detach() + forward.detach()
    logr = ref_logp - logp
    if input_clamp is not None:
        logr = logr.clamp(min=-input_clamp, max=input_clamp)
    if kl_type == "k1":
        kl = -logr
    elif kl_type == "k2":
        kl = torch.square(logr) / 2
    elif kl_type == "k3":
        kl = torch.exp(logr) - 1 - logr
    else:
        raise ValueError(kl_type)
    if output_clamp is not None:
        kl = kl.clamp(min=-output_clamp, max=output_clamp)
    return kl


def _clip_metrics(
    logp: Tensor, old_logp: Tensor, adv: Tensor, mask: Tensor, clip_low: float, clip_high: float
) -> dict[str, Tensor]:
    """TRL `GRPOTrainer._compute_loss` clip metrics and verl/NeMo RL ratio metrics of the
    ratio r = exp(log_ratio(logp, old_logp))."""
    lr = log_ratio(logp, old_logp)
    ratio = torch.exp(lr)
    adv = adv.expand(ratio.shape)
    low = (ratio < 1 - clip_low) & (adv < 0)
    high = (ratio > 1 + clip_high) & (adv > 0)
    return {
        "clip_frac_low": masked_mean(low.to(ratio.dtype), mask),
        "clip_frac_high": masked_mean(high.to(ratio.dtype), mask),
        "clip_frac": masked_mean((low | high).to(ratio.dtype), mask),
        "approx_kl": masked_mean(-lr, mask),
        "ratio_mean": masked_mean(ratio, mask),
        "ratio_min": masked_min(ratio, mask),
        "ratio_max": masked_max(ratio, mask),
    }


# --------------------------------------------------------------------------- policy gradient


def reinforce(*, logp, values, returns, mask, vf_coef=0.5, agg="token_mean", loss_scale_factor=0):
    """REINFORCE with a learned baseline.

    Williams 1992 ("Simple statistical gradient-following algorithms", Eq. 11 with
    reinforcement baseline b); Sutton & Barto 2018 §13.4 "REINFORCE with Baseline":
    δ = G - v̂(s), θ ← θ + α δ ∇ln π(a|s), w ← w + α δ ∇v̂(s). As losses:
    policy = agg(-ln π · sg(G - v̂)), value = agg(½ (v̂ - G)²) (verl 0.9.1
    `compute_policy_loss_reinforce` aggregates with any loss_agg_mode).
    """
    adv = (returns - values).detach()
    policy = agg_loss(-logp * adv, mask, agg, loss_scale_factor)
    value = agg_loss(0.5 * torch.square(values - returns), mask, agg, loss_scale_factor)
    return {
        "loss": policy + vf_coef * value,
        "policy": policy,
        "value": value,
        "advantage_mean": masked_mean(adv, mask),
    }


def ppo(
    *,
    logits,
    values,
    actions,
    old_logp,
    old_values,
    advantages,
    returns,
    mask,
    clip_low=0.2,
    clip_high=0.2,
    dual_clip="on",
    clip_c=3.0,
    value_clip=0.2,
    vf_coef=0.5,
    ent_coef=None,
    agg="token_mean",
    loss_scale_factor=0,
    step=0,
    ref_logp=None,
    kl_coef=0.0,
    kl_type="k3",
    kl_ctl="fixed",
    kl_target=6.0,
    kl_horizon=10000,
):
    """PPO clipped surrogate + clipped value loss + entropy bonus, token level.

    verl `trainer/ppo/core_algos.py`: `compute_policy_loss_vanilla` (ratio =
    exp(clamp(logp - old, ±20)); pg = max(-A r, -A clip(r, 1-ε_low, 1+ε_high));
    dual clip (Ye et al. 2020, arXiv:1912.09729 Eq. 5): where A < 0,
    pg = min(pg, -A·c)), `compute_value_loss` (0.5 · agg(max((v-R)², (clip(v, v_old±ε_v)-R)²))),
    `compute_entropy_loss` (agg of token entropy); `agg_loss` for every term.
    Total = pg + vf_coef·vf - ent_coef·entropy (verl dp_actor / critic), plus
    kl_coef·agg(kl estimate against `ref_logp`, 0 when not given), as `grpo` adds it
    (fixed β; `adaptive_kl_beta` below is the adaptive controller's sequence of β).
    ent_coef default: linear(0.01, 0.0, steps=10000) of `step`.
    """
    assert kl_ctl == "fixed", "the adaptive β depends on the calls before: adaptive_kl_beta"
    del kl_target, kl_horizon
    if ent_coef is None:
        ent_coef = linear_schedule(0.01, 0.0, 10000, step)
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    ratio = torch.exp(log_ratio(logp, old_logp))
    clip_loss = clipped_surrogate(ratio, advantages, clip_low, clip_high)
    pg3 = -advantages * clip_c
    if dual_clip == "on":
        pg = torch.where(advantages < 0, torch.minimum(pg3, clip_loss), clip_loss)
    else:
        pg = clip_loss
    policy = agg_loss(pg, mask, agg, loss_scale_factor)

    v_clipped = torch.clamp(values, old_values - value_clip, old_values + value_clip)
    vf1 = torch.square(values - returns)
    vf2 = torch.square(v_clipped - returns)
    value = 0.5 * agg_loss(torch.maximum(vf1, vf2), mask, agg, loss_scale_factor)

    probs = torch.softmax(logits, dim=-1)
    tok_entropy = -(probs * logp_all).sum(-1)
    entropy = agg_loss(tok_entropy, mask, agg, loss_scale_factor)

    if ref_logp is None:
        ref_logp = torch.zeros_like(logp)
    kl_tok = kl_estimate(logp, ref_logp, kl_type)
    kl = agg_loss(kl_tok, mask, agg, loss_scale_factor)

    out = {
        "loss": policy + vf_coef * value - ent_coef * entropy + kl_coef * kl,
        "policy": policy,
        "value": value,
        "entropy": entropy,
        "kl": kl,
        "kl_per_seq": sequence_kl(kl_tok, mask),
    }
    out.update(_clip_metrics(logp, old_logp, advantages, mask, clip_low, clip_high))
    dual = (clip_loss > pg3) & (advantages < 0)
    out["dual_clip_frac"] = (
        masked_mean(dual.to(ratio.dtype), mask)
        if dual_clip == "on"
        else torch.zeros((), dtype=ratio.dtype)
    )
    out["vf_clip_frac"] = masked_mean((vf2 > vf1).to(ratio.dtype), mask)
    return out


def sequence_kl(kl_tok: Tensor, mask: Tensor) -> Tensor:
    """TRL's `mean_kl` (PPOTrainer before v0.12, `step`): each sequence's summed KL
    estimate over its tokens, averaged over the batch's sequences."""
    return (kl_tok * mask).sum(-1).mean()


def adaptive_kl_beta(beta: float, kls: list[float], n: int, target: float, horizon: float):
    """The adaptive KL controller's β after each call (Ziegler et al. 2019,
    arXiv:1909.08593 §2.2; TRL `AdaptiveKLController.update`, OpenRLHF
    `AdaptiveKLController.update`): e = clip(KL / target - 1, -0.2, 0.2),
    β ← β · (1 + e · n / horizon)."""
    betas = []
    for kl in kls:
        error = min(max(kl / target - 1, -0.2), 0.2)
        beta = beta * (1 + error * n / horizon)
        betas.append(beta)
    return betas


def awr(*, logp, values, returns, temperature=1.0, max_weight=20.0, vf_coef=1.0):
    """Advantage-weighted regression.

    Peng et al. 2019 (arXiv:1910.00177) Algorithm 1 / Eq. 13-14: policy maximises
    E[log π(a|s) · exp((R - V(s))/β)] with weights clipped at ω_max (paper: 20),
    value minimises E[(R - V(s))²]. Advantage uses the value function held fixed
    (stop-gradient).
    """
    adv = (returns - values).detach()
    w = torch.clamp(torch.exp(adv / temperature), max=max_weight)
    policy = -(logp * w).mean()
    value = torch.square(returns - values).mean()
    return {
        "loss": policy + vf_coef * value,
        "policy": policy,
        "value": value,
        "weight_mean": w.mean(),
        "weight_max": w.max(),
        "weight_clip_frac": (torch.exp(adv / temperature) >= max_weight).to(w.dtype).mean(),
    }


# --------------------------------------------------------------------------- GRPO family


def dual_clip(pg: Tensor, adv: Tensor, clip_c: float) -> Tensor:
    """Dual-clip PPO (Ye et al. 2020, arXiv:1912.09729 Eq. 5; verl clip_ratio_c): where
    A < 0 the per-token loss is min(pg, -A·c)."""
    return torch.where(adv < 0, torch.minimum(-adv * clip_c, pg), pg)


def policy_losses(
    kind: str,
    *,
    logp,
    old_logp,
    advantages,
    clip_low=0.2,
    clip_high=0.2,
    dual_clip_on=False,
    clip_c=3.0,
    tau_pos=1.0,
    tau_neg=1.05,
) -> Tensor:
    """Per-token policy losses of verl 0.9.1 `core_algos` (`@register_policy_loss` names),
    before aggregation, with r = exp(clamp(logp - old_logp, ±20)):

    vanilla   max(-A·r, -A·clip(r, 1-ε_lo, 1+ε_hi)), dual clip optional
              (compute_policy_loss_vanilla; Schulman et al. 2017 Eq. 7)
    gpg       -A·log π (compute_policy_loss_gpg; Chu et al. 2025, arXiv:2504.02546 Eq. 6)
    cispo     -sg(clip(r, 1-ε_lo, 1+ε_hi))·A·log π (compute_policy_loss_cispo;
              MiniMax-M1, arXiv:2506.13585 Eq. 4)
    sapo      -A·σ(τ(r-1))·4/τ, τ = τ_pos if A > 0 else τ_neg (compute_policy_loss_sapo;
              Gao et al. 2025, arXiv:2511.20347 Eq. 5)
    dppo_tv   -A·sg(min(r, c))·log π · [p - p_old ≤ δ_hi if A > 0 else p - p_old ≥ -δ_lo]
              (compute_policy_loss_dppo_tv; Qi et al. 2026, arXiv:2602.04879)
    dppo_kl   the same with the binary KL D = p_old·log(p_old/p) + (1-p_old)·
              log((1-p_old+1e-8)/(1-p+1e-8)): kept if D ≤ δ_hi or p ≤ p_old (A > 0),
              D ≤ δ_lo or p ≥ p_old (A ≤ 0) (compute_policy_loss_dppo_kl)
    """
    adv = advantages.expand(logp.shape)
    ratio = torch.exp(log_ratio(logp, old_logp))
    if kind == "vanilla":
        pg = clipped_surrogate(ratio, adv, clip_low, clip_high)
        return dual_clip(pg, adv, clip_c) if dual_clip_on else pg
    if kind == "gpg":
        return -logp * adv
    if kind == "cispo":
        return -torch.clamp(ratio, 1 - clip_low, 1 + clip_high).detach() * adv * logp
    if kind == "sapo":
        tau = torch.where(adv > 0, torch.full_like(adv, tau_pos), torch.full_like(adv, tau_neg))
        return -torch.sigmoid(tau * (ratio - 1.0)) * (4.0 / tau) * adv
    if kind in ("dppo_tv", "dppo_kl"):
        prob, old_prob = torch.exp(logp), torch.exp(old_logp)
        if kind == "dppo_tv":
            positive_ok = (prob - old_prob) <= clip_high
            negative_ok = (prob - old_prob) >= -clip_low
        else:
            binary_kl = old_prob * (old_logp - logp) + (1 - old_prob) * torch.log(
                (1.0 - old_prob + 1e-8) / (1.0 - prob + 1e-8)
            )
            positive_ok = (binary_kl <= clip_high) | (prob <= old_prob)
            negative_ok = (binary_kl <= clip_low) | (prob >= old_prob)
        valid = torch.where(adv > 0, positive_ok, negative_ok).detach().to(logp.dtype)
        truncated = torch.clamp(ratio, max=clip_c).detach()
        return -adv * truncated * logp * valid
    raise ValueError(kind)


def grpo(
    *,
    logp,
    old_logp,
    advantages,
    mask,
    ref_logp=None,
    clip_low=0.2,
    clip_high=0.2,
    kl_coef=0.04,
    kl_type="k3",
    policy_loss="vanilla",
    dual_clip="off",
    clip_c=3.0,
    tau_pos=1.0,
    tau_neg=1.05,
    agg="seq_mean_token_mean",
    loss_scale_factor=0,
):
    """GRPO: a per-token policy loss with a KL penalty to the reference.

    Shao et al. 2024 (DeepSeekMath, arXiv:2402.03300) Eq. 3; verl 0.9.1
    `compute_policy_loss_*` (`policy_losses`) + `agg_loss` (modes), TRL
    `GRPOTrainer._compute_loss` (loss_type "grpo" = seq_mean_token_mean, "bnpo" =
    token_mean); KL estimator NeMo RL `calculate_kl` (±20 input, ±10 output clamps) and
    verl's abs / straight-through estimators, aggregated like the policy loss (verl
    `kl_loss` with the same agg mode). Total = policy + β·kl.
    """
    if ref_logp is None:
        ref_logp = torch.zeros_like(logp)
    pg = policy_losses(
        policy_loss,
        logp=logp,
        old_logp=old_logp,
        advantages=advantages,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip_on=dual_clip == "on",
        clip_c=clip_c,
        tau_pos=tau_pos,
        tau_neg=tau_neg,
    )
    policy = agg_loss(pg, mask, agg, loss_scale_factor)
    kl = agg_loss(kl_estimate(logp, ref_logp, kl_type), mask, agg, loss_scale_factor)
    out = {"loss": policy + kl_coef * kl, "policy": policy, "kl": kl}
    out.update(_clip_metrics(logp, old_logp, advantages, mask, clip_low, clip_high))
    return out


def dr_grpo(
    *,
    logp,
    old_logp,
    advantages,
    mask,
    ref_logp=None,
    clip_low=0.2,
    clip_high=0.2,
    kl_coef=0.0,
    kl_type="k3",
    dual_clip="off",
    clip_c=3.0,
):
    """Dr. GRPO: the GRPO surrogate summed over tokens, divided by a constant.

    Liu et al. 2025 ("Understanding R1-Zero-Like Training", arXiv:2503.20783) Eq. 3
    (no 1/|o_i|; advantages without std normalisation, computed by the caller);
    TRL `GRPOTrainer._compute_loss` loss_type "dr_grpo":
    Σ_bt loss·m / (B · max_completion_length), with max_completion_length = T
    (completions padded to the maximum length).
    """
    if ref_logp is None:
        ref_logp = torch.zeros_like(logp)
    pg = policy_losses(
        "vanilla",
        logp=logp,
        old_logp=old_logp,
        advantages=advantages,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip_on=dual_clip == "on",
        clip_c=clip_c,
    )
    B, T = mask.shape
    policy = masked_sum(pg, mask) / max(B * T, 1)
    kl = masked_sum(kl_estimate(logp, ref_logp, kl_type), mask) / max(B * T, 1)
    out = {"loss": policy + kl_coef * kl, "policy": policy, "kl": kl}
    out.update(_clip_metrics(logp, old_logp, advantages, mask, clip_low, clip_high))
    return out


def dapo(
    *, logp, old_logp, advantages, mask, clip_low=0.2, clip_high=0.28, dual_clip="off", clip_c=3.0
):
    """DAPO: clip-higher (ε_low = 0.2, ε_high = 0.28) and token-level mean over the batch.

    Yu et al. 2025 (arXiv:2503.14476) Eq. 8 / 10: 1/Σ|o_i| Σ_i Σ_t min(r A, clip(r, 1-ε_low,
    1+ε_high) A), no KL term; verl `agg_loss` "token-mean", TRL loss_type "dapo"; dual
    clip optional (verl clip_ratio_c).
    """
    pg = policy_losses(
        "vanilla",
        logp=logp,
        old_logp=old_logp,
        advantages=advantages,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip_on=dual_clip == "on",
        clip_c=clip_c,
    )
    policy = agg_loss(pg, mask, "token_mean")
    out = {"loss": policy, "policy": policy}
    out.update(_clip_metrics(logp, old_logp, advantages, mask, clip_low, clip_high))
    return out


def gspo(
    *,
    logp,
    old_logp,
    advantages,
    mask,
    clip_low=3e-4,
    clip_high=4e-4,
    ratio_form="token",
    agg="seq_mean_token_mean",
    loss_scale_factor=0,
):
    """GSPO: sequence-level importance ratio s_i = exp(mean_t log r_it).

    Zheng et al. 2025 (arXiv:2507.18071) Eq. 5-7 and GSPO-token Eq. 13-14; verl
    `compute_policy_loss_gspo`: log s_it = sg(mean_t log r) + logp - sg(logp), clamped
    at max 10, pg = max(-A s, -A clip(s, 1-ε_low, 1+ε_high)), aggregated with `agg`
    (verl: seq-mean-token-mean always). `ratio_form` does not change the value or
    gradient (the sequence form's gradient equals the stop-gradient form's for A_it =
    A_i, with any weights that are equal over the tokens of a sequence).
    """
    m = mask.bool()
    neg_kl = logp - old_logp
    seq_len = m.sum(-1, keepdim=True).clamp(min=1).to(logp.dtype)
    seq_lr = masked_sum(neg_kl, m, dim=-1).unsqueeze(-1) / seq_len
    log_s = torch.clamp(logp - logp.detach() + seq_lr.detach(), max=10.0)
    s = torch.exp(log_s)
    pg1 = -advantages * s
    pg2 = -advantages * torch.clamp(s, 1 - clip_low, 1 + clip_high)
    pg = torch.maximum(pg1, pg2)
    policy = agg_loss(pg, m, agg, loss_scale_factor)
    seq_ratio = torch.exp(torch.clamp(seq_lr, max=10.0)).detach()
    adv = advantages.expand(m.shape)
    sr = seq_ratio.expand(m.shape)
    low = (sr < 1 - clip_low) & (adv < 0)
    high = (sr > 1 + clip_high) & (adv > 0)
    seq_valid = m.any(-1, keepdim=True)
    return {
        "loss": policy,
        "policy": policy,
        "clip_frac_low": masked_mean(low.to(s.dtype), m),
        "clip_frac_high": masked_mean(high.to(s.dtype), m),
        "approx_kl": masked_mean(-neg_kl, m),
        "seq_ratio_mean": masked_mean(seq_ratio, seq_valid),
        "seq_ratio_min": masked_min(seq_ratio, seq_valid),
        "seq_ratio_max": masked_max(seq_ratio, seq_valid),
    }


def gmpo(*, logp, old_logp, advantages, mask, clip_low=0.4, clip_high=0.4):
    """GMPO: geometric mean of the token ratios, clipped per token in log space.

    Zhao et al. 2025 ("Geometric-Mean Policy Optimization", arXiv:2507.20673) Eq. 7
    (clip range (e^-0.4, e^0.4)); verl 0.9.1 `compute_policy_loss_geo_mean`:
    c = sgn(A)·min(sgn(A)·log r, sgn(A)·clip(log r, -ε_lo, ε_hi)), s_i = exp(mean_t c),
    loss = mean_i(-A_i·s_i); here the mean over the non-empty sequences, without verl's
    1e-8 in the token counts, with the mean log-ratio capped at 20.
    """
    m = mask.bool()
    lr = logp - old_logp
    sgn = torch.sign(advantages).expand(lr.shape)
    clamped = torch.clamp(lr, -clip_low, clip_high)
    c = sgn * torch.minimum(sgn * lr, sgn * clamped)
    n = m.sum(-1)
    valid = n > 0
    mean_c = masked_sum(c, m, dim=-1) / n.clamp(min=1).to(logp.dtype)
    s = torch.exp(torch.clamp(mean_c, max=20.0))
    per_seq = -advantages.squeeze(-1) * s
    policy = masked_sum(per_seq, valid) / valid.sum().clamp(min=1).to(logp.dtype)
    clipped = (lr != clamped).to(logp.dtype)
    adv = advantages.expand(lr.shape)
    return {
        "loss": policy,
        "policy": policy,
        "clip_frac_high": masked_mean(clipped * (adv > 0), m),
        "clip_frac_low": masked_mean(clipped * (adv < 0), m),
        "approx_kl": masked_mean(-lr, m),
        "seq_ratio_mean": masked_mean(s.detach(), valid),
    }


def cispo(
    *,
    logp,
    old_logp,
    advantages,
    mask,
    clip_low=1.0,
    clip_high=4.0,
    agg="token_mean",
    loss_scale_factor=0,
):
    """CISPO: clipped, detached importance weight times the log-probability.

    MiniMax-M1 (arXiv:2506.13585) Eq. 4-5: J = 1/Σ|o_i| Σ_i Σ_t sg(r̂_it) Â_it log π(o_it),
    r̂ = clip(r, 1-ε_low^IS, 1+ε_high^IS) (no lower bound in the paper: ε_low = 1 here).
    TRL loss_type "cispo" writes the cap as `epsilon_high` itself (= 1 + clip_high here);
    verl 0.9.1 `compute_policy_loss_cispo` aggregates with any loss_agg_mode.
    """
    ratio = torch.exp(log_ratio(logp, old_logp))
    w = torch.clamp(ratio, 1 - clip_low, 1 + clip_high).detach()
    policy = agg_loss(-w * advantages * logp, mask, agg, loss_scale_factor)
    return {
        "loss": policy,
        "policy": policy,
        "clip_frac": masked_mean((ratio > 1 + clip_high).to(ratio.dtype), mask),
        "ratio_mean": masked_mean(ratio, mask),
        "is_weight_mean": masked_mean(w, mask),
    }


def rollout_is_weights(
    old_logp, rollout_logp, mask, level="token", mode="clamp", cap=2.0, low=0.5, normalize=False
):
    """verl 0.9.1 `rollout_corr_helper.compute_rollout_correction_weights` with
    log_ratio = old_logp - rollout_logp, before it masks padding: per token exp(clamp(lr,
    ±20)); per sequence exp(clamp(Σ_t lr·m, ±20)) for every token of it; TIS (a single
    threshold) min(w, cap), IcePop ("lower_upper") w·[low ≤ w ≤ cap]; batch
    normalisation divides by the mean weight over the unmasked tokens ("token") or over the
    non-empty sequences ("sequence"), unless that mean is ≤ 1e-8. Returns (weights,
    raw weights)."""
    m = mask.bool()
    lr = old_logp - rollout_logp
    if level == "token":
        raw = torch.exp(torch.clamp(lr, -20.0, 20.0))
    else:
        raw = torch.exp(torch.clamp(masked_sum(lr, m, dim=-1), -20.0, 20.0)).unsqueeze(-1)
        raw = raw.expand(lr.shape)
    if mode == "clamp":
        w = torch.clamp(raw, max=cap)
    else:
        w = torch.where((raw >= low) & (raw <= cap), raw, torch.zeros_like(raw))
    if normalize:
        if level == "token":
            mean = masked_mean(w, m)
        else:
            seq_valid = m.any(-1)
            seq_w = masked_mean(w, m, dim=-1)
            mean = masked_sum(seq_w, seq_valid) / seq_valid.sum().clamp(min=1).to(w.dtype)
        if mean > 1e-8:
            w = w / mean
    return w, raw


def tis(
    *,
    logp,
    old_logp,
    rollout_logp,
    advantages,
    mask,
    clip_low=0.2,
    clip_high=0.2,
    tis_mode="clamp",
    is_level="token",
    is_batch_normalize="off",
    is_cap=2.0,
    is_min=0.5,
    agg="token_mean",
    loss_scale_factor=0,
):
    """PPO/GRPO surrogate with importance weights for the train/inference (rollout engine)
    mismatch.

    Yao et al. 2025 "Your efficient RL framework secretly brings you off-policy RL
    training" (fengyao.notion.site/off-policy-rl); verl 0.9.1 rollout correction
    (`rollout_is_weights`) applied as `compute_policy_loss_vanilla` does (pg · w, then
    agg_loss); NeMo RL `ClippedPGLossFn` "icepop" = tis_mode "mask". w is a constant.
    """
    ratio = torch.exp(log_ratio(logp, old_logp))
    pg = clipped_surrogate(ratio, advantages, clip_low, clip_high)
    w, w_raw = rollout_is_weights(
        old_logp,
        rollout_logp,
        mask,
        is_level,
        tis_mode,
        is_cap,
        is_min,
        is_batch_normalize == "on",
    )
    oob = w_raw > is_cap if tis_mode == "clamp" else (w_raw < is_min) | (w_raw > is_cap)
    policy = agg_loss(pg * w, mask, agg, loss_scale_factor)
    out = {
        "loss": policy,
        "policy": policy,
        "is_weight_mean": masked_mean(w, mask),
        "is_oob_frac": masked_mean(oob.to(w.dtype), mask),
    }
    out.update(_clip_metrics(logp, old_logp, advantages, mask, clip_low, clip_high))
    return out


def kl_penalty(*, logp, ref_logp, mask, kl_type="k3"):
    """Token-mean KL estimate to a reference policy: NeMo RL `calculate_kl` (k1/k2/k3,
    ±20 input and ±10 output clamps; Schulman 2020), masked token mean."""
    k = kl_estimate(logp, ref_logp, kl_type)
    return {"loss": masked_mean(k, mask), "kl": masked_mean(k, mask), "kl_per_token": k}


# --------------------------------------------------------------------------- preference


def _dpo_losses(pc, pr, rc, rr, beta, label_smoothing, loss_type):
    """The per-pair losses of TRL's `DPOConfig.loss_type`s (TRL 1.16 computes them inside
    `DPOTrainer`'s loss; older releases had a `dpo_loss` method)."""
    logratios = pc - pr
    ref_logratios = rc - rr
    logits = logratios - ref_logratios
    chosen_logratios = pc - rc
    rejected_logratios = pr - rr
    if loss_type == "sigmoid":
        return (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            - F.logsigmoid(-beta * logits) * label_smoothing
        )
    if loss_type == "robust":
        return (
            -F.logsigmoid(beta * logits) * (1 - label_smoothing)
            + F.logsigmoid(-beta * logits) * label_smoothing
        ) / (1 - 2 * label_smoothing)
    if loss_type == "hinge":
        return torch.relu(1 - beta * logits)
    if loss_type == "ipo":
        # Azar et al. 2023 (arXiv:2310.12036) Eq. 17, beta = tau
        return (logits - 1 / (2 * beta)) ** 2
    if loss_type == "sppo_hard":
        # Wu et al. 2024 (arXiv:2405.00675) Eq. 4.7 with hard P ∈ {0, 1}
        a, b = chosen_logratios, rejected_logratios
        return (a - 0.5 / beta) ** 2 + (b + 0.5 / beta) ** 2
    if loss_type == "nca_pair":
        # Chen et al. 2024 (arXiv:2402.05369) NCA, pairwise
        cr = chosen_logratios * beta
        rj = rejected_logratios * beta
        return -F.logsigmoid(cr) - 0.5 * F.logsigmoid(-cr) - 0.5 * F.logsigmoid(-rj)
    if loss_type == "apo_zero":
        # D'Oosterlinck et al. 2024 (arXiv:2408.06266) Eq. 7
        return (1 - torch.sigmoid(beta * chosen_logratios)) + torch.sigmoid(
            beta * rejected_logratios
        )
    raise ValueError(loss_type)


def _reward_metrics(chosen_rewards, rejected_rewards):
    """TRL DPOTrainer.get_batch_loss_metrics: rewards/{chosen,rejected,accuracies,margins}."""
    return {
        "rewards_chosen": chosen_rewards.mean(),
        "rewards_rejected": rejected_rewards.mean(),
        "reward_accuracy": (chosen_rewards > rejected_rewards).to(chosen_rewards.dtype).mean(),
        "reward_margin": (chosen_rewards - rejected_rewards).mean(),
    }


def dpo(
    *,
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    beta=0.1,
    label_smoothing=0.0,
    loss_type="sigmoid",
):
    """DPO and its TRL loss types.

    Rafailov et al. 2023 (arXiv:2305.18290) Eq. 7; label smoothing = conservative DPO
    (Mitchell 2023); robust = Chowdhury et al. 2024 (arXiv:2403.00409) Eq. 21; TRL
    1.16 `DPOConfig.loss_type` for every loss type, mean over pairs.
    """
    losses = _dpo_losses(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        label_smoothing,
        loss_type,
    )
    cr = (beta * (policy_chosen_logps - reference_chosen_logps)).detach()
    rr = (beta * (policy_rejected_logps - reference_rejected_logps)).detach()
    out = {"loss": losses.mean(), "dpo": losses.mean()}
    out.update(_reward_metrics(cr, rr))
    return out


class RunningMoments:
    """TRL `trainer/utils.py::RunningMoments` (one process): a running mean and variance
    of the values passed to `update`, starting at mean 0, variance 1, count 1e-24
    (Chan et al.'s parallel update of the moments). In float64, where TRL casts each
    batch's moments to float32 before the update."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-24

    def update(self, xs: Tensor) -> None:
        xs_count = xs.numel()
        xs_var, xs_mean = torch.var_mean(xs.double(), unbiased=False)
        delta = float(xs_mean) - self.mean
        total = self.count + xs_count
        old_sum = self.var * self.count + delta**2 * self.count * xs_count / total
        self.var = (old_sum + float(xs_var) * xs_count) / total
        self.mean += delta * xs_count / total
        self.count = total


def bco_pair(
    *,
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    running: RunningMoments,
    beta=0.1,
):
    """BCO-pair, TRL `DPOTrainer.dpo_loss` with loss_type "bco_pair" (Jung et al. 2024,
    arXiv:2404.04656): rewards r = β·(logπ - logπ_ref); the running mean δ of the batches'
    mean reward (`running`, updated first, in place); loss = mean(-logσ(r_c - δ) -
    logσ(-(r_r - δ)))."""
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps)
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps)
    running.update(torch.cat((chosen_rewards, rejected_rewards), 0).mean().detach())
    delta = running.mean
    losses = -F.logsigmoid(chosen_rewards - delta) - F.logsigmoid(-(rejected_rewards - delta))
    out = {"loss": losses.mean(), "bco_pair": losses.mean()}
    out.update(_reward_metrics(chosen_rewards.detach(), rejected_rewards.detach()))
    out["running_reward"] = torch.tensor(delta, dtype=torch.float64)
    return out


def dpo_sft(
    *,
    chosen_token_logps,
    chosen_mask,
    rejected_token_logps,
    rejected_mask,
    reference_chosen_logps,
    reference_rejected_logps,
    beta=0.1,
    label_smoothing=0.0,
    rpo_alpha=1.0,
):
    """DPO (sigmoid, label smoothing) + NLL on the chosen response: RPO.

    Pang et al. 2024 ("Iterative Reasoning Preference Optimization", arXiv:2404.19733)
    Eq. 1-3; TRL `DPOTrainer` with `rpo_alpha`: loss = mean(dpo_losses) + α·nll, nll =
    cross-entropy over the chosen tokens (mean over all chosen tokens of the batch),
    policy logps = Σ_t per-token log-probs (`concatenated_forward`).
    """
    pc = masked_sum(chosen_token_logps, chosen_mask, dim=-1)
    pr = masked_sum(rejected_token_logps, rejected_mask, dim=-1)
    losses = _dpo_losses(
        pc, pr, reference_chosen_logps, reference_rejected_logps, beta, label_smoothing, "sigmoid"
    )
    nll = -masked_mean(chosen_token_logps, chosen_mask)
    out = {"loss": losses.mean() + rpo_alpha * nll, "dpo": losses.mean(), "nll": nll}
    out.update(
        _reward_metrics(
            (beta * (pc - reference_chosen_logps)).detach(),
            (beta * (pr - reference_rejected_logps)).detach(),
        )
    )
    return out


def simpo(
    *,
    chosen_token_logps,
    chosen_mask,
    rejected_token_logps,
    rejected_mask,
    beta=2.0,
    gamma=0.5,
    label_smoothing=0.0,
):
    """SimPO: reference-free, length-normalised reward with a target margin γ.

    Meng et al. 2024 (arXiv:2405.14734) Eq. 6: -log σ(β/|y_w| log π(y_w) - β/|y_l| log π(y_l) - γ);
    TRL `CPOTrainer.cpo_loss` loss_type "simpo" (logits = Δavg - γ/β, label smoothing
    as in DPO's sigmoid loss), average log-probs per sequence.
    """
    ac = masked_mean(chosen_token_logps, chosen_mask, dim=-1)
    ar = masked_mean(rejected_token_logps, rejected_mask, dim=-1)
    logits = (ac - ar) - gamma / beta
    losses = (
        -F.logsigmoid(beta * logits) * (1 - label_smoothing)
        - F.logsigmoid(-beta * logits) * label_smoothing
    )
    out = {"loss": losses.mean(), "simpo": losses.mean()}
    out.update(_reward_metrics((beta * ac).detach(), (beta * ar).detach()))
    return out


def orpo(*, chosen_token_logps, chosen_mask, policy_chosen_logps, policy_rejected_logps, beta=0.1):
    """ORPO: NLL on the chosen response plus an odds-ratio term.

    Hong et al. 2024 (arXiv:2403.07691) Eq. 6-7; TRL `ORPOTrainer.odds_ratio_loss`:
    log_odds = (lc - lr) - (log1p(-exp(lc)) - log1p(-exp(lr))) on average log-probs,
    loss = nll - β·mean(logsigmoid(log_odds)); nll = token-mean CE over chosen tokens.
    """
    lc, lrj = policy_chosen_logps, policy_rejected_logps
    log_odds = (lc - lrj) - (torch.log1p(-torch.exp(lc)) - torch.log1p(-torch.exp(lrj)))
    ratio = F.logsigmoid(log_odds)
    nll = -masked_mean(chosen_token_logps, chosen_mask)
    odds_ratio = -ratio.mean()
    out = {
        "loss": nll + beta * odds_ratio,
        "nll": nll,
        "odds_ratio": odds_ratio,
        "log_odds_ratio": ratio.mean().detach(),
        "log_odds_chosen": log_odds.mean().detach(),
    }
    out.update(_reward_metrics((beta * lc).detach(), (beta * lrj).detach()))
    return out


def bradley_terry(*, rewards_chosen, rewards_rejected, margin=None, center_coef=0.0):
    """Bradley-Terry reward-model loss.

    Ouyang et al. 2022 (InstructGPT, arXiv:2203.02155) Eq. 1; TRL `RewardTrainer.compute_loss`:
    -mean(logsigmoid(r_c - r_r - margin)) + center_rewards_coefficient·mean((r_c + r_r)²).
    """
    if margin is None:
        margin = torch.zeros_like(rewards_chosen)
    pref = -F.logsigmoid(rewards_chosen - rewards_rejected - margin).mean()
    center = torch.mean((rewards_chosen + rewards_rejected) ** 2)
    return {
        "loss": pref + center_coef * center,
        "preference": pref,
        "center": center,
        "accuracy": (rewards_chosen > rewards_rejected).to(pref.dtype).mean(),
        "margin_mean": (rewards_chosen - rewards_rejected).mean().detach(),
    }


# --------------------------------------------------------------------------- SFT / distillation


def sft_nll(*, logits, labels, ignore_index=-100, label_smoothing=0.0):
    """Token NLL with ignore-index and label smoothing.

    `torch.nn.functional.cross_entropy(logits.flatten(0, -2), labels.flatten(),
    ignore_index=-100, label_smoothing=ε)` (Szegedy et al. 2016 §7 label smoothing):
    per token (1-ε)(-log p_y) + ε·mean_v(-log p_v), mean over non-ignored tokens
    (0 when all are ignored, where torch gives NaN).
    """
    valid = labels != ignore_index
    lp = torch.log_softmax(logits, dim=-1)
    tgt = torch.where(valid, labels, torch.zeros_like(labels))
    nll = -lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    smooth = -lp.mean(-1)
    tok = (1 - label_smoothing) * nll + label_smoothing * smooth
    loss = masked_mean(tok, valid)
    acc = masked_mean((logits.argmax(-1) == labels).to(logits.dtype), valid)
    return {"loss": loss, "nll": loss, "accuracy": acc, "num_tokens": valid.sum().to(logits.dtype)}


def distill_kl(*, student_logits, teacher_logits, mask=None, temperature=1.0, direction="forward"):
    """KL distillation between student and teacher token distributions at temperature τ.

    TRL `GKDTrainer.generalized_jsd_loss` with beta = 0 (forward KL(p_T‖p_S)) or beta = 1
    (reverse KL(p_S‖p_T)) on log_softmax(logits/τ), summed over the vocabulary,
    averaged over unmasked tokens ("batchmean" over the labels != -100 positions).
    Hinton et al. 2015 for the temperature (no τ² factor, as TRL).
    """
    if mask is None:
        mask = torch.ones(student_logits.shape[:-1], dtype=torch.bool)
    s = torch.log_softmax(student_logits / temperature, dim=-1)
    t = torch.log_softmax(teacher_logits / temperature, dim=-1)
    if direction == "forward":
        kl = F.kl_div(s, t, reduction="none", log_target=True).sum(-1)
    else:
        kl = F.kl_div(t, s, reduction="none", log_target=True).sum(-1)
    loss = masked_mean(kl, mask)
    return {"loss": loss, "kl": loss, "kl_per_token": kl.detach()}
