"""The losses of torch.nn.functional, verl's `core_algos` and TRL's `DPOTrainer`, each with
the standard spec and params that compute it, or why none does. scripts/stdlib_doc.py
renders it into docs/stdlib.md; tests/test_framework_losses.py checks that every spec and
param named here exists and that every loss of the three lists has a row.

`params` holds only `name=value` settings of the spec (a number or a quoted choice);
everything else goes into `note`; a row without a spec says in its note why none computes
the loss.
"""

from __future__ import annotations

from typing import NamedTuple


class Row(NamedTuple):
    loss: str
    spec: str | None = None
    params: str = ""
    note: str = ""


TORCH = [
    Row("binary_cross_entropy", "bce", note="`weight` is an optional input"),
    Row(
        "binary_cross_entropy_with_logits",
        "bce_with_logits",
        note="`weight` is an optional input; `pos_weight` a scalar param (not per class)",
    ),
    Row(
        "cosine_embedding_loss",
        "cosine_embedding",
        'reduction="mean"',
        'also `reduction="sum"`; `margin`',
    ),
    Row(
        "cross_entropy",
        "cross_entropy",
        note="class indices, `ignore_index`, `label_smoothing`; classes last. Probability "
        "targets and per-class `weight=` are not params: write `-sum(p · log_softmax(x))`",
    ),
    Row(
        "ctc_loss",
        note="none: CTC sums over alignments by a forward recursion through time (a scan "
        "whose step depends on the previous one); the language has elementwise ops, "
        "reductions, sort and cumsum, but no loop or scan, so it cannot express it honestly",
    ),
    Row("gaussian_nll_loss", "gaussian_nll", note="`full`, `eps`"),
    Row("hinge_embedding_loss", "hinge_embedding", note="`margin`"),
    Row("huber_loss", "huber", note="`delta`"),
    Row("kl_div", "kl_div", note='reduction "mean" as torch; log_target=False'),
    Row("l1_loss", "l1"),
    Row("margin_ranking_loss", "margin_ranking", note="`margin`"),
    Row("mse_loss", "mse"),
    Row(
        "multi_margin_loss",
        "multi_margin",
        "p=1",
        "`p=2`, `margin`, per-class `weight` input, `reduction`",
    ),
    Row("multilabel_margin_loss", "multilabel_margin", note="targets ended by -1, as torch"),
    Row("multilabel_soft_margin_loss", "multilabel_soft_margin", note="`weight` input"),
    Row("nll_loss", "nll", note="`ignore_index`; per-class `weight=` is not a param"),
    Row("poisson_nll_loss", "poisson_nll", 'full="off"', "log_input=True; `full`, `reduction`"),
    Row(
        "poisson_nll_loss (log_input=False)",
        "poisson_nll_rate",
        'full="off"',
        "`eps` inside the log, `full`, `reduction`",
    ),
    Row("smooth_l1_loss", "smooth_l1", note="`beta`"),
    Row("soft_margin_loss", "soft_margin"),
    Row(
        "triplet_margin_loss",
        "triplet_margin",
        'swap="off"',
        '`margin`, `p` ≥ 1, `eps`, `swap="on"`, `reduction`',
    ),
    Row(
        "triplet_margin_with_distance_loss",
        "triplet_margin",
        "p=2",
        "the default distance only; another distance is a spec of its own with "
        "`use triplet_margin` (a Python callable is not a param)",
    ),
]
TORCH_NOTE = (
    'Every spec reduces to a scalar (`"mean"`, and `"sum"` where it has `reduction`); '
    'torch\'s `reduction="none"` is the elementwise def each classic spec exports '
    "(`use huber` gives `huber_loss`), used inside another spec."
)

VERL = [
    Row(
        'policy loss "vanilla"',
        "ppo",
        'dual_clip="on", clip_c=3.0',
        "the clipped surrogate with value and entropy terms; without a critic `grpo` "
        "(`kl_coef=0`), clip-higher `dapo`",
    ),
    Row('policy loss "gspo"', "gspo", 'ratio_form="sequence"'),
    Row('policy loss "cispo"', "cispo"),
    Row('policy loss "sapo"', "grpo", 'policy_loss="sapo"', "`tau_pos`, `tau_neg`"),
    Row('policy loss "gpg"', "grpo", 'policy_loss="gpg"'),
    Row('policy loss "geo_mean" (GMPO)', "gmpo"),
    Row(
        'policy loss "clip_cov"',
        note="none: it picks tokens at random among those of highest covariance; the "
        "language has no random draws or top-k",
    ),
    Row('policy loss "kl_cov"', note="none: a top-k selection by covariance, as `clip_cov`"),
    Row('policy loss "dppo_tv"', "grpo", 'policy_loss="dppo_tv"'),
    Row('policy loss "dppo_kl"', "grpo", 'policy_loss="dppo_kl"'),
    Row(
        'policy loss "bypass_mode", ppo_clip',
        "grpo",
        note="the rollout's log-probs passed as `old_logp`",
    ),
    Row(
        'policy loss "bypass_mode", reinforce (IS-weighted REINFORCE)',
        note="none yet: `reinforce` has no rollout importance weight; `tis` weights the "
        "clipped surrogate",
    ),
    Row("rollout correction, token level (truncated / masked IS)", "tis", 'tis_mode="clamp"'),
    Row(
        "rollout correction, sequence level and batch-normalised weights",
        "tis",
        'is_level="sequence", is_batch_normalize="on"',
    ),
    Row(
        "agg_loss: token-mean, seq-mean-token-sum, seq-mean-token-mean, seq-mean-token-sum-norm",
        "grpo",
        'agg="token_mean"',
        "`agg` of every RL spec (token-sum too), over the global batch",
    ),
    Row("dual clip in the GRPO family", "grpo", 'dual_clip="on"', "and `dapo`, `dr_grpo`"),
    Row('kl_penalty "k1" / "kl"', "kl_penalty", 'kl_type="k1"', "also `kl_type` of `grpo`"),
    Row('kl_penalty "k2" / "mse"', "kl_penalty", 'kl_type="k2"'),
    Row('kl_penalty "k3" / "low_var_kl"', "kl_penalty", 'kl_type="k3"', "verl's clamps"),
    Row(
        'kl_penalty "abs", "k1+", "k3+"',
        "grpo",
        'kl_type="k3_plus"',
        '`kl_type` "abs", "k1_plus", "k3_plus" (also of `ppo`)',
    ),
    Row(
        'kl_penalty "full"',
        note="none: verl raises NotImplementedError for it; the full-vocabulary KL is "
        '`distill_kl` (`direction="reverse"`) over per-token logits',
    ),
    Row("compute_value_loss", "ppo", "value_clip=0.2", "the `value` term, `vf_coef`"),
    Row("compute_entropy_loss", "ppo", note="the `entropy` term, `ent_coef`"),
    Row(
        "compute_policy_loss_reinforce",
        "reinforce",
        note="with a value baseline; the rollout-IS-weighted form: none yet",
    ),
    Row(
        "advantage estimators (gae, grpo, grpo_passk, grpo_vectorized, reinforce_plus_plus, "
        "reinforce_plus_plus_baseline, remax, rloo, rloo_vectorized, opo, gpg, "
        "optimal_token_baseline, tir_optimal_token_baseline)",
        note="none: not losses; they make the `advantages` input before the loss, without gradient",
    ),
    Row(
        "compute_rewards (KL in the reward)",
        note="none: reward shaping before the advantages, not a loss",
    ),
    Row("FixedKLController", "grpo", "kl_coef=0.04", "`kl_coef`, a param or a schedule"),
    Row(
        "AdaptiveKLController",
        "ppo",
        'kl_ctl="adaptive"',
        "`kl_coef` the start, `kl_target`, `kl_horizon`; β kept as the state `kl_beta`",
    ),
    Row(
        "compute_pf_ppo_reweight_data",
        note="none: resamples the batch, not a loss",
    ),
]
VERL_NOTE = (
    "verl's `verl/trainer/ppo/core_algos.py`, the policy losses of its `register_policy_loss` "
    "registry and its helpers."
)

TRL = [
    Row(
        '"sigmoid"',
        "dpo",
        'loss_type="sigmoid"',
        "keeps cDPO's `label_smoothing` (TRL 1.16 drops it)",
    ),
    Row('"hinge"', "dpo", 'loss_type="hinge"'),
    Row(
        '"ipo"',
        "dpo_variants",
        'loss_type="ipo"',
        "per-token scores as TRL; `dpo` takes averaged log-probs",
    ),
    Row('"exo_pair"', "dpo_variants", 'loss_type="exo_pair"', "ε is `exo_epsilon`"),
    Row('"nca_pair"', "dpo", 'loss_type="nca_pair"'),
    Row('"robust"', "dpo", 'loss_type="robust"'),
    Row(
        '"bco_pair"',
        "bco_pair",
        note="TRL's running mean of the rewards kept as states",
    ),
    Row('"sppo_hard"', "dpo", 'loss_type="sppo_hard"'),
    Row('"aot"', "dpo_variants", 'loss_type="aot"'),
    Row('"aot_unpaired"', "dpo_variants", 'loss_type="aot_unpaired"'),
    Row('"apo_zero"', "dpo", 'loss_type="apo_zero"'),
    Row('"apo_down"', "dpo_variants", 'loss_type="apo_down"'),
    Row('"discopop"', "dpo_variants", 'loss_type="discopop"', "`discopop_tau`"),
    Row('"sft"', "dpo_variants", 'loss_type="sft"', "with a DPO loss: `dpo_sft` (`rpo_alpha`)"),
    Row('"sigmoid_norm"', "dpo_variants", 'loss_type="sigmoid_norm"'),
    Row(
        "f_divergence_type, f_alpha_divergence_coef",
        "dpo_variants",
        'f_divergence_type="alpha_divergence", f_alpha_divergence_coef=0.5',
    ),
    Row("ld_alpha", "dpo_variants", "ld_alpha=0.5"),
    Row("use_weighting (WPO)", "dpo_variants", 'use_weighting="on"'),
    Row(
        "loss_type list with loss_weights",
        "dpo_variants",
        'loss_type="sigmoid", second_loss_type="sft", loss_weight=0.8',
        "up to three types",
    ),
]
TRL_NOTE = "TRL 1.16's `DPOConfig.loss_type` values and the options of `DPOTrainer`'s loss."

SECTIONS = [
    ("torch.nn.functional", TORCH, TORCH_NOTE),
    ("verl core_algos", VERL, VERL_NOTE),
    ("TRL DPOTrainer", TRL, TRL_NOTE),
]


def render() -> str:
    parts = [
        "## Framework losses and their specs\n",
        "Each loss of torch.nn.functional, verl's `core_algos` and TRL's `DPOTrainer`, with "
        "the spec and params that compute it (`lossdsl.load(spec, params={...})`), or why "
        "no spec does.\n",
    ]
    for title, rows, note in SECTIONS:
        parts.append(f"### {title}\n\n{note}\n")
        parts.append("| loss | spec | params | notes |")
        parts.append("|---|---|---|---|")
        for row in rows:
            spec = f"`{row.spec}`" if row.spec else "—"
            params = f"`{row.params}`" if row.params else ""
            parts.append(f"| {row.loss} | {spec} | {params} | {row.note} |")
        parts.append("")
    return "\n".join(parts)
