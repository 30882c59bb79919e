"""Benchmark cases: input makers and the hand-written losses lossdsl is measured against.

Every input dict is keyed by the names the standard-library spec declares (LANGUAGE.md), so
`lossdsl.load(case.spec)(**case.spec_inputs(inputs))` and `case.hand(**inputs)` see the same
tensors. When a spec lands with other names or shapes, adjust it here and nowhere else.

The hand-written versions follow the way TRL, NeMo RL and verl write these losses: log_softmax
then gather for token log-probs, `(x * mask).sum() / mask.sum()` masked means, entropy as
`logsumexp - sum(softmax * logits)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

Inputs = dict[str, Tensor]
LossFn = Callable[..., Tensor]

IGNORE_INDEX = -100

# Hyper-parameters shared by the hand-written versions and, where a spec needs telling, `params=`.
PPO_CLIP, PPO_DUAL_CLIP, PPO_VALUE_CLIP = 0.2, 3.0, 0.2
PPO_VF_COEF, PPO_ENT_COEF_AT_STEP_0 = 0.5, 0.01
GRPO_CLIP, GRPO_KL_COEF = 0.2, 0.04
DPO_BETA = 0.1
HUBER_DELTA = 1.0


# ---------------------------------------------------------------- shared helpers (framework style)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def token_logprobs(logits: Tensor, actions: Tensor) -> Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return torch.gather(logp, -1, actions.unsqueeze(-1)).squeeze(-1)


def clamped_ratio(logp: Tensor, old_logp: Tensor) -> Tensor:
    return torch.exp(torch.clamp(logp - old_logp, min=-20.0, max=20.0))


def entropy_from_logits(logits: Tensor) -> Tensor:
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def leaf(t: Tensor, device: str, grad: bool) -> Tensor:
    return t.to(device).requires_grad_(grad)


def random_mask(shape: tuple[int, ...], keep: float, gen: torch.Generator) -> Tensor:
    return torch.rand(shape, generator=gen) < keep


# ---------------------------------------------------------------- cross-entropy over [N, V]


def make_cross_entropy(size: dict[str, int], device: str) -> Inputs:
    n, v = size["N"], size["V"]
    gen = generator()
    target = torch.randint(0, v, (n,), generator=gen)
    target[~random_mask((n,), keep=0.9, gen=gen)] = IGNORE_INDEX
    return {
        "input": leaf(torch.randn(n, v, generator=gen), device, grad=True),
        "target": target.to(device),
    }


def hand_cross_entropy(input: Tensor, target: Tensor) -> Tensor:
    """Token NLL as the RL frameworks compute log-probs: log_softmax, gather, masked mean."""
    valid = target != IGNORE_INDEX
    logp = token_logprobs(input, torch.where(valid, target, 0))
    return -masked_mean(logp, valid)


def torch_cross_entropy(input: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(input, target, ignore_index=IGNORE_INDEX)


# ---------------------------------------------------------------- PPO, token level


def make_ppo(size: dict[str, int], device: str) -> Inputs:
    b, t, v = size["B"], size["T"], size["V"]
    gen = generator(1)
    return {
        "logits": leaf(torch.randn(b, t, v, generator=gen), device, grad=True),
        "values": leaf(torch.randn(b, t, generator=gen), device, grad=True),
        "old_values": torch.randn(b, t, generator=gen).to(device),
        "actions": torch.randint(0, v, (b, t), generator=gen).to(device),
        "old_logp": (-torch.rand(b, t, generator=gen) * 10).to(device),
        "advantages": torch.randn(b, t, generator=gen).to(device),
        "returns": torch.randn(b, t, generator=gen).to(device),
        "mask": random_mask((b, t), keep=0.8, gen=gen).to(device),
    }


def hand_ppo(
    logits: Tensor,
    values: Tensor,
    actions: Tensor,
    old_logp: Tensor,
    old_values: Tensor,
    advantages: Tensor,
    returns: Tensor,
    mask: Tensor,
) -> Tensor:
    """verl's PPO at step 0 (compute_policy_loss_vanilla with dual clip, compute_value_loss,
    entropy bonus), every term a token mean over `mask`: the defaults of specs/rl/ppo.loss."""
    logp = token_logprobs(logits, actions)
    ratio = clamped_ratio(logp, old_logp)
    pg_losses = torch.maximum(
        -advantages * ratio, -advantages * torch.clamp(ratio, 1 - PPO_CLIP, 1 + PPO_CLIP)
    )
    dual_clipped = torch.minimum(pg_losses, -advantages * PPO_DUAL_CLIP)
    policy = masked_mean(torch.where(advantages < 0, dual_clipped, pg_losses), mask)
    values_clipped = torch.clamp(values, old_values - PPO_VALUE_CLIP, old_values + PPO_VALUE_CLIP)
    value_losses = torch.maximum((values - returns) ** 2, (values_clipped - returns) ** 2)
    value = 0.5 * masked_mean(value_losses, mask)
    entropy = masked_mean(entropy_from_logits(logits), mask)
    return policy + PPO_VF_COEF * value - PPO_ENT_COEF_AT_STEP_0 * entropy


# ---------------------------------------------------------------- GRPO


def make_grpo(size: dict[str, int], device: str) -> Inputs:
    b, t, v = size["B"], size["T"], size["V"]
    gen = generator(2)
    return {
        "logits": leaf(torch.randn(b, t, v, generator=gen), device, grad=True),
        "actions": torch.randint(0, v, (b, t), generator=gen).to(device),
        "old_logp": (-torch.rand(b, t, generator=gen) * 10).to(device),
        "ref_logp": (-torch.rand(b, t, generator=gen) * 10).to(device),
        "advantages": torch.randn(b, 1, generator=gen).to(device),  # per sequence
        "mask": random_mask((b, t), keep=0.8, gen=gen).to(device),
    }


def hand_grpo(
    logits: Tensor,
    actions: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
) -> Tensor:
    """Token-level clipped surrogate + k3 KL (NeMo RL's calculate_kl clamps), aggregated
    seq_mean_token_mean as verl's agg_loss does."""
    logp = token_logprobs(logits, actions)
    ratio = clamped_ratio(logp, old_logp)
    surrogate = torch.minimum(
        ratio * advantages, torch.clamp(ratio, 1 - GRPO_CLIP, 1 + GRPO_CLIP) * advantages
    )
    log_ratio_ref = torch.clamp(ref_logp - logp, min=-20.0, max=20.0)
    kl_k3 = torch.clamp(torch.exp(log_ratio_ref) - log_ratio_ref - 1, min=-10.0, max=10.0)
    per_token = -surrogate + GRPO_KL_COEF * kl_k3
    per_sequence = (per_token * mask).sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
    return per_sequence.mean()


# ---------------------------------------------------------------- DPO


def make_dpo(size: dict[str, int], device: str) -> Inputs:
    """Per-token log-probs and masks; `dpo_spec_inputs` sums them per sequence."""
    b, t = size["B"], size["T"]
    gen = generator(3)

    def token_logps(grad: bool) -> Tensor:
        return leaf(-torch.rand(b, t, generator=gen) * 5, device, grad=grad)

    return {
        "policy_chosen_token_logps": token_logps(grad=True),
        "policy_rejected_token_logps": token_logps(grad=True),
        "reference_chosen_token_logps": token_logps(grad=False),
        "reference_rejected_token_logps": token_logps(grad=False),
        "chosen_mask": random_mask((b, t), keep=0.7, gen=gen).to(device),
        "rejected_mask": random_mask((b, t), keep=0.7, gen=gen).to(device),
    }


def dpo_spec_inputs(inputs: Inputs) -> Inputs:
    """The per-sequence log-probs ([B]) the dpo spec takes, summed over masked tokens (TRL)."""
    chosen, rejected = inputs["chosen_mask"], inputs["rejected_mask"]
    return {
        "policy_chosen_logps": (inputs["policy_chosen_token_logps"] * chosen).sum(-1),
        "policy_rejected_logps": (inputs["policy_rejected_token_logps"] * rejected).sum(-1),
        "reference_chosen_logps": (inputs["reference_chosen_token_logps"] * chosen).sum(-1),
        "reference_rejected_logps": (inputs["reference_rejected_token_logps"] * rejected).sum(-1),
    }


def dpo_sigmoid_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
) -> Tensor:
    """TRL's DPOTrainer.dpo_loss, loss_type="sigmoid", no label smoothing."""
    logits = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    return -F.logsigmoid(DPO_BETA * logits).mean()


def hand_dpo(**inputs: Tensor) -> Tensor:
    return dpo_sigmoid_loss(**dpo_spec_inputs(inputs))


# ---------------------------------------------------------------- Huber


def make_huber(size: dict[str, int], device: str) -> Inputs:
    gen = generator(4)
    n = size["N"]
    return {
        "input": leaf(torch.randn(n, generator=gen) * 2, device, grad=True),
        "target": torch.randn(n, generator=gen).to(device),
    }


def hand_huber(input: Tensor, target: Tensor) -> Tensor:
    return F.huber_loss(input, target, delta=HUBER_DELTA)


# ---------------------------------------------------------------- the table of cases


def same_inputs(inputs: Inputs) -> Inputs:
    return inputs


@dataclass(frozen=True)
class Case:
    name: str
    spec: str  # standard-library spec name for lossdsl.load
    make_inputs: Callable[[dict[str, int], str], Inputs]
    hand: LossFn  # called as hand(**inputs)
    sizes: dict[str, dict[str, int]]  # "full" (CPU), "gpu", "quick"
    spec_inputs: Callable[[Inputs], Inputs] = same_inputs  # inputs -> spec keyword arguments
    spec_params: dict[str, float | str] = field(default_factory=dict)  # lossdsl.load(params=)
    extra_variants: dict[str, LossFn] = field(default_factory=dict)  # name -> eager fn
    compiled_extras: tuple[str, ...] = ()  # extra variants also run under torch.compile


VOCAB_FULL = {"B": 8, "T": 256, "V": 8192}
VOCAB_GPU = {"B": 16, "T": 1024, "V": 32768}
VOCAB_QUICK = {"B": 2, "T": 16, "V": 128}

CASES: dict[str, Case] = {
    case.name: case
    for case in [
        Case(
            name="cross_entropy",
            spec="cross_entropy",
            make_inputs=make_cross_entropy,
            hand=hand_cross_entropy,
            sizes={
                "full": {"N": 2048, "V": 8192},
                "gpu": {"N": 16384, "V": 32768},
                "quick": {"N": 32, "V": 128},
            },
            extra_variants={"F.cross_entropy": torch_cross_entropy},
            compiled_extras=("F.cross_entropy",),
        ),
        Case(
            name="ppo",
            spec="ppo",
            make_inputs=make_ppo,
            hand=hand_ppo,
            sizes={"full": VOCAB_FULL, "gpu": VOCAB_GPU, "quick": VOCAB_QUICK},
        ),
        Case(
            name="grpo",
            spec="grpo",
            make_inputs=make_grpo,
            hand=hand_grpo,
            sizes={"full": VOCAB_FULL, "gpu": VOCAB_GPU, "quick": VOCAB_QUICK},
            spec_params={"agg": "seq_mean_token_mean", "kl_coef": GRPO_KL_COEF},
        ),
        Case(
            name="dpo",
            spec="dpo",
            make_inputs=make_dpo,
            hand=hand_dpo,
            sizes={
                "full": {"B": 16, "T": 512},
                "gpu": {"B": 64, "T": 4096},
                "quick": {"B": 4, "T": 8},
            },
            spec_inputs=dpo_spec_inputs,
            spec_params={"beta": DPO_BETA},
        ),
        Case(
            name="huber",
            spec="huber",
            make_inputs=make_huber,
            hand=hand_huber,
            sizes={"full": {"N": 4 * 2**20}, "gpu": {"N": 64 * 2**20}, "quick": {"N": 1024}},
            spec_params={"delta": HUBER_DELTA},
        ),
    ]
}


def grad_inputs(inputs: Inputs) -> list[Tensor]:
    return [t for t in inputs.values() if t.requires_grad]


def largest_input(inputs: Inputs) -> Tensor:
    return max(inputs.values(), key=lambda t: t.numel() * t.element_size())
