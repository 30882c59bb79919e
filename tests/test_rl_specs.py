"""The RL, preference and SFT specs against independent plain-PyTorch references.

Every spec in `specs/rl`, `specs/preference` and `specs/sft` is compared with
`tests/reference/rl_reference.py` (written from the papers' and frameworks'
formulas; each reference function cites its source): the loss, every term and
metric, and the gradient w.r.t. every `grad` input, in float64 to 1e-10 and in
float32 to 1e-5, on random inputs with ragged masks that include an all-masked
sequence, and on an all-masked batch (finite, 0 where every term is a masked
mean). Every `select` mode is parametrized. Behavioural tests follow the
frameworks' own suites (PPO clipping with hand-computed ratios, dual clip,
masking = dropping, k3 ≥ 0, DPO at equality = log 2, GRPO with centred
advantages). The behavioural tests run on the reference as well as on lossdsl,
so they check the reference itself too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import torch

import lossdsl
from tests.reference import rl_reference as ref
from tests.support import needs_one_compilation_across_sizes

B, T, V = 6, 7, 11
TC, TR, N = 5, 8, 9

F64_TOL = dict(rtol=1e-10, atol=1e-10)
F32_TOL = dict(rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- inputs


def _prefix_mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def _mask(kind: str, lengths: list[int], width: int) -> torch.Tensor:
    """`ragged`: prefix masks of the given lengths (one of them 0); `full`; `all` (all masked)."""
    if kind == "ragged":
        return _prefix_mask(lengths, width)
    if kind == "full":
        return torch.ones(len(lengths), width, dtype=torch.bool)
    if kind == "all":
        return torch.zeros(len(lengths), width, dtype=torch.bool)
    raise ValueError(kind)


RAGGED_T = [T, 4, 0, 6, 1, 3]
RAGGED_TC = [TC, 2, 0, 4, 1, 3]
RAGGED_TR = [TR, 5, 3, 0, 8, 1]


def _neg_logp(g: torch.Generator, *shape) -> torch.Tensor:
    return -(torch.rand(*shape, generator=g, dtype=torch.float64) * 3 + 0.01)


def _near(g, base, scale):
    """base + scale·noise, kept strictly negative (a log-probability)."""
    return torch.clamp(
        base + scale * torch.randn(base.shape, generator=g, dtype=torch.float64), max=-1e-3
    )


def make_inputs(spec: str, mask_kind: str = "ragged", seed: int = 0) -> dict[str, torch.Tensor]:
    """float64 inputs for `spec`, named as its inputs."""
    g = torch.Generator().manual_seed(seed)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    mask = _mask(mask_kind, RAGGED_T, T)
    if spec == "reinforce":
        return dict(logp=_neg_logp(g, B, T), values=randn(B, T), returns=randn(B, T), mask=mask)
    if spec == "ppo":
        logits = randn(B, T, V)
        actions = torch.randint(0, V, (B, T), generator=g)
        logp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        values = randn(B, T)
        return dict(
            logits=logits,
            values=values,
            actions=actions,
            old_logp=_near(g, logp, 0.3),
            old_values=values + 0.3 * randn(B, T),
            advantages=randn(B, T),
            returns=randn(B, T),
            mask=mask,
            ref_logp=_near(g, logp, 0.5),
        )
    if spec == "awr":
        return dict(logp=randn(N), values=randn(N), returns=randn(N) * 2)
    if spec in ("grpo", "dr_grpo", "dapo", "gspo", "cispo", "gmpo"):
        logp = _neg_logp(g, B, T)
        d = dict(logp=logp, old_logp=_near(g, logp, 0.3), advantages=randn(B, 1), mask=mask)
        if spec in ("grpo", "dr_grpo"):
            d["ref_logp"] = _near(g, logp, 0.5)
        return d
    if spec == "tis":
        logp = _neg_logp(g, B, T)
        old = _near(g, logp, 0.3)
        return dict(
            logp=logp,
            old_logp=old,
            rollout_logp=_near(g, old, 0.6),
            advantages=randn(B, T),
            mask=mask,
        )
    if spec == "kl_penalty":
        logp = _neg_logp(g, B, T)
        return dict(logp=logp, ref_logp=_near(g, logp, 0.8), mask=mask)
    if spec == "dpo":
        pc, pr = (
            -torch.rand(B, generator=g, dtype=torch.float64) * 20,
            -torch.rand(B, generator=g, dtype=torch.float64) * 20,
        )
        return dict(
            policy_chosen_logps=pc,
            policy_rejected_logps=pr,
            reference_chosen_logps=_near(g, pc, 2.0),
            reference_rejected_logps=_near(g, pr, 2.0),
        )
    if spec in ("dpo_sft", "simpo"):
        cm = _mask(mask_kind, RAGGED_TC, TC)
        rm = _mask(mask_kind, RAGGED_TR, TR)
        d = dict(
            chosen_token_logps=_neg_logp(g, B, TC),
            chosen_mask=cm,
            rejected_token_logps=_neg_logp(g, B, TR),
            rejected_mask=rm,
        )
        if spec == "dpo_sft":
            d["reference_chosen_logps"] = -torch.rand(B, generator=g, dtype=torch.float64) * 8
            d["reference_rejected_logps"] = -torch.rand(B, generator=g, dtype=torch.float64) * 8
        return d
    if spec == "orpo":
        return dict(
            chosen_token_logps=_neg_logp(g, B, T),
            chosen_mask=mask,
            policy_chosen_logps=-(torch.rand(B, generator=g, dtype=torch.float64) * 2 + 0.05),
            policy_rejected_logps=-(torch.rand(B, generator=g, dtype=torch.float64) * 2 + 0.05),
        )
    if spec == "bradley_terry":
        return dict(
            rewards_chosen=randn(B),
            rewards_rejected=randn(B),
            margin=torch.rand(B, generator=g, dtype=torch.float64),
        )
    if spec == "sft_nll":
        labels = torch.randint(0, V, (B, T), generator=g)
        labels = torch.where(mask, labels, torch.full_like(labels, -100))
        return dict(logits=randn(B, T, V) * 2, labels=labels)
    if spec == "distill_kl":
        return dict(student_logits=randn(B, T, V) * 2, teacher_logits=randn(B, T, V) * 2, mask=mask)
    raise ValueError(spec)


GRAD_INPUTS = {
    "reinforce": ("logp", "values"),
    "ppo": ("logits", "values"),
    "awr": ("logp", "values"),
    "grpo": ("logp",),
    "dr_grpo": ("logp",),
    "dapo": ("logp",),
    "gspo": ("logp",),
    "gmpo": ("logp",),
    "cispo": ("logp",),
    "tis": ("logp",),
    "kl_penalty": ("logp",),
    "dpo": ("policy_chosen_logps", "policy_rejected_logps"),
    "dpo_sft": ("chosen_token_logps", "rejected_token_logps"),
    "simpo": ("chosen_token_logps", "rejected_token_logps"),
    "orpo": ("chosen_token_logps", "policy_chosen_logps", "policy_rejected_logps"),
    "bradley_terry": ("rewards_chosen", "rewards_rejected"),
    "sft_nll": ("logits",),
    "distill_kl": ("student_logits",),
}

REFERENCES = {name: getattr(ref, name) for name in GRAD_INPUTS}

# Specs whose every term is a masked mean of per-token values: 0 on an all-masked batch.
ZERO_WHEN_ALL_MASKED = {
    "reinforce",
    "ppo",
    "grpo",
    "dr_grpo",
    "dapo",
    "gspo",
    "gmpo",
    "cispo",
    "tis",
    "kl_penalty",
    "sft_nll",
    "distill_kl",
}
HAS_MASK = ZERO_WHEN_ALL_MASKED | {"dpo_sft", "simpo", "orpo"}


# --------------------------------------------------------------------------- cases


@dataclass
class Case:
    spec: str
    params: dict = field(default_factory=dict)
    step: int = 0

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.spec}[{extra}]" + (f"@{self.step}" if self.step else "")


CASES: list[Case] = [
    *[Case("reinforce", {"agg": a}) for a in ref.AGG_MODES],
    Case("reinforce", {"vf_coef": 0.25}),
    Case("reinforce", {"agg": "seq_mean_token_sum_norm", "loss_scale_factor": 3.5}),
    *[Case("ppo", {"agg": a, "dual_clip": d}) for a in ref.AGG_MODES for d in ("on", "off")],
    Case("ppo", {"clip_low": 0.1, "clip_high": 0.28, "clip_c": 1.5, "value_clip": 0.05}, step=5000),
    Case("ppo", {"agg": "seq_mean_token_mean"}, step=20000),
    *[Case("ppo", {"kl_coef": 0.1, "kl_type": k}) for k in ref.KL_TYPES],
    Case("ppo", {"kl_coef": 0.2, "agg": "seq_mean_token_sum"}),
    Case("ppo", {"agg": "seq_mean_token_sum_norm", "loss_scale_factor": 16}),
    Case("awr"),
    Case("awr", {"temperature": 0.5, "max_weight": 2.0, "vf_coef": 0.5}),
    *[Case("grpo", {"agg": a}) for a in ref.AGG_MODES],
    *[Case("grpo", {"kl_type": k, "kl_coef": 0.5}) for k in ref.KL_TYPES],
    *[Case("grpo", {"policy_loss": p, "agg": "token_mean"}) for p in ref.POLICY_LOSSES],
    Case("grpo", {"policy_loss": "vanilla", "dual_clip": "on", "clip_c": 1.5}),
    Case("grpo", {"policy_loss": "sapo", "tau_pos": 0.5, "tau_neg": 2.0}),
    Case("grpo", {"policy_loss": "dppo_tv", "clip_low": 0.05, "clip_high": 0.1, "clip_c": 1.2}),
    Case("grpo", {"policy_loss": "dppo_kl", "clip_low": 0.02, "clip_high": 0.05, "clip_c": 20}),
    Case("grpo", {"clip_low": 0.1, "clip_high": 0.28, "kl_coef": 0.5}),
    Case("grpo", {"agg": "seq_mean_token_sum_norm", "loss_scale_factor": 2.5}),
    *[Case("dr_grpo", {"kl_type": k, "kl_coef": 0.1}) for k in ref.KL_TYPES],
    Case("dr_grpo"),
    Case("dr_grpo", {"dual_clip": "on", "clip_c": 1.5}),
    Case("dapo"),
    Case("dapo", {"clip_low": 0.1, "clip_high": 0.4}),
    Case("dapo", {"dual_clip": "on", "clip_c": 1.5}),
    *[
        Case("gspo", {"ratio_form": f, "agg": a})
        for f in ("token", "sequence")
        for a in ref.AGG_MODES
    ],
    *[
        Case("gspo", {"ratio_form": f, "clip_low": 0.02, "clip_high": 0.03})
        for f in ("token", "sequence")
    ],
    Case("gmpo"),
    Case("gmpo", {"clip_low": 0.1, "clip_high": 0.2}),
    *[Case("cispo", {"agg": a}) for a in ref.AGG_MODES],
    Case("cispo", {"clip_low": 0.2, "clip_high": 0.2}),
    *[Case("tis", {"tis_mode": m, "agg": a}) for m in ("clamp", "mask") for a in ref.AGG_MODES],
    Case("tis", {"tis_mode": "mask", "is_cap": 1.5, "is_min": 0.8}),
    *[
        Case("tis", {"tis_mode": m, "is_level": lv, "is_batch_normalize": n, "is_cap": 4.0})
        for m in ("clamp", "mask")
        for lv in ("token", "sequence")
        for n in ("off", "on")
    ],
    *[Case("kl_penalty", {"kl_type": k}) for k in ref.KL_TYPES],
    *[Case("dpo", {"loss_type": t}) for t in ref.DPO_LOSS_TYPES],
    *[
        Case("dpo", {"loss_type": t, "label_smoothing": 0.1, "beta": 0.3})
        for t in ("sigmoid", "robust")
    ],
    Case("dpo_sft"),
    Case("dpo_sft", {"beta": 0.5, "label_smoothing": 0.1, "rpo_alpha": 0.3}),
    Case("simpo"),
    Case("simpo", {"beta": 2.5, "gamma": 1.0, "label_smoothing": 0.1}),
    Case("orpo"),
    Case("orpo", {"beta": 0.5}),
    Case("bradley_terry"),
    Case("bradley_terry", {"center_coef": 0.01}),
    Case("sft_nll"),
    Case("sft_nll", {"label_smoothing": 0.1}),
    *[
        Case("distill_kl", {"direction": d, "temperature": t})
        for d in ("forward", "reverse")
        for t in (1.0, 2.0)
    ],
]


# --------------------------------------------------------------------------- running


_MODULES: dict = {}


def load(spec: str, params: dict):
    key = (spec, tuple(sorted(params.items())))
    if key not in _MODULES:
        _MODULES[key] = lossdsl.load(spec, params=dict(params))
    return _MODULES[key]


def run_spec(spec: str, params: dict, inputs: dict, step: int = 0) -> dict:
    out = load(spec, params)(**inputs, step=step)
    return {"loss": out.loss, **out.terms, **out.metrics}


def run_reference(spec: str, params: dict, inputs: dict, step: int = 0) -> dict:
    kwargs = {**inputs, **params}
    if spec == "ppo":
        kwargs["step"] = step
    return REFERENCES[spec](**kwargs)


def run(impl: str, spec: str, params: dict, inputs: dict, step: int = 0) -> dict:
    return (run_spec if impl == "lossdsl" else run_reference)(spec, params, inputs, step)


def with_grad(inputs: dict, names, dtype) -> dict:
    out = {}
    for k, v in inputs.items():
        if v.is_floating_point():
            v = v.detach().to(dtype).clone()
            if k in names:
                v.requires_grad_(True)
        out[k] = v
    return out


def grads(loss: torch.Tensor, inputs: dict, names) -> dict:
    gs = torch.autograd.grad(loss, [inputs[n] for n in names], allow_unused=True)
    return {
        n: (torch.zeros_like(inputs[n]) if gr is None else gr)
        for n, gr in zip(names, gs, strict=True)
    }


def compare(case: Case, inputs64: dict, dtype, tol) -> tuple[dict, dict]:
    """Run spec (in `dtype`) and reference (in float64 on the same values); compare all."""
    names = GRAD_INPUTS[case.spec]
    spec_in = with_grad(inputs64, names, dtype)
    ref_in = with_grad(
        {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs64.items()},
        names,
        torch.float64,
    )
    got = run_spec(case.spec, case.params, spec_in, case.step)
    want = run_reference(case.spec, case.params, ref_in, case.step)
    assert set(got) == set(want), f"spec outputs {sorted(got)} != reference {sorted(want)}"
    for key, w in want.items():
        torch.testing.assert_close(
            got[key].detach().double(),
            w.detach().double(),
            **tol,
            msg=lambda m, key=key: f"{case.id} {key}: {m}",
        )
    g_got = grads(got["loss"], spec_in, names)
    g_want = grads(want["loss"], ref_in, names)
    for n in names:
        torch.testing.assert_close(
            g_got[n].double(), g_want[n], **tol, msg=lambda m, n=n: f"{case.id} d loss/d {n}: {m}"
        )
    return got, g_got


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_reference_float64(case: Case):
    """Values, terms, metrics and gradients equal the reference to 1e-10 in float64,
    on ragged masks with an all-masked sequence (sources: see each reference's docstring)."""
    mask_kinds = ["ragged", "full"] if case.spec in HAS_MASK else ["full"]
    for kind in mask_kinds:
        for seed in (0, 1):
            compare(case, make_inputs(case.spec, kind, seed), torch.float64, F64_TOL)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matches_reference_float32(case: Case):
    """The same in float32, to 1e-5, against the float64 reference on the same values."""
    kind = "ragged" if case.spec in HAS_MASK else "full"
    got, _ = compare(case, make_inputs(case.spec, kind, 2), torch.float32, F32_TOL)
    assert got["loss"].dtype == torch.float32


@pytest.mark.parametrize("case", [c for c in CASES if c.spec in HAS_MASK], ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_all_masked_batch(case: Case, dtype):
    """An all-masked batch gives a finite loss and finite gradients (masked mean =
    sum / max(count, 1)); 0 for specs whose terms are all masked token means."""
    got, g = compare(
        case,
        make_inputs(case.spec, "all", 3),
        dtype,
        F64_TOL if dtype == torch.float64 else F32_TOL,
    )
    assert torch.isfinite(got["loss"]).all()
    for n, gr in g.items():
        assert torch.isfinite(gr).all(), n
    if case.spec in ZERO_WHEN_ALL_MASKED:
        assert got["loss"].item() == 0.0
        for n, gr in g.items():
            assert (gr == 0).all(), n


def test_ppo_weights_follow_the_entropy_schedule():
    """ent_coef = linear(0.01, 0.0, steps=10000) (LANGUAGE.md schedules); weights are
    {policy: 1, value: vf_coef, entropy: -ent_coef(step)} (verl dp_actor: pg - ent·H + vf·V)."""
    inputs = make_inputs("ppo")
    fn = load("ppo", {})
    for step, ent in ((0, 0.01), (2500, 0.0075), (10000, 0.0), (30000, 0.0)):
        out = fn(**inputs, step=step)
        w = {k: float(v) for k, v in out.weights.items()}
        assert w["policy"] == pytest.approx(1.0)
        assert w["value"] == pytest.approx(0.5)
        assert w["entropy"] == pytest.approx(-ent, abs=1e-12)


# --------------------------------------------------------------------------- behaviour

IMPLS = ["reference", "lossdsl"]


def _ratio_inputs(ratios, advs, dtype=torch.float64):
    """One token per row with old_logp chosen so that exp(logp - old_logp) = ratio."""
    n = len(ratios)
    logp = torch.full((n, 1), math.log(0.1), dtype=dtype)
    old = logp - torch.log(torch.tensor(ratios, dtype=dtype)).unsqueeze(1)
    return dict(
        logp=logp.clone().requires_grad_(True),
        old_logp=old,
        advantages=torch.tensor(advs, dtype=dtype).unsqueeze(1),
        mask=torch.ones(n, 1, dtype=torch.bool),
    )


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("spec,clip_high", [("grpo", 0.2), ("dapo", 0.28)])
def test_clipping_hand_computed_ratios(impl, spec, clip_high):
    """Schulman et al. 2017 Eq. 7 (verl test_core_algos / TRL test_grpo_trainer style):
    per-token loss -min(r·A, clip(r, 0.8, 1 + ε_high)·A) for r ∈ {0.5, 1, 1.5}, A = ±1,
    and zero gradient exactly where the clipped branch is taken."""
    ratios = [0.5, 1.0, 1.5, 0.5, 1.0, 1.5]
    advs = [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    inputs = _ratio_inputs(ratios, advs)
    params = {"agg": "token_mean", "kl_coef": 0.0} if spec == "grpo" else {}
    out = run(impl, spec, params, inputs)
    per_token = [-0.5, -1.0, -(1 + clip_high), 0.8, 1.0, 1.5]
    assert out["policy"].item() == pytest.approx(sum(per_token) / 6, abs=1e-12)
    (g,) = torch.autograd.grad(out["loss"], [inputs["logp"]])
    # d(-A·r)/dlogp = -A·r where unclipped, 0 where clipped; token mean over 6.
    want = torch.tensor([-0.5, -1.0, 0.0, 0.0, 1.0, 1.5], dtype=torch.float64) / 6
    torch.testing.assert_close(g.squeeze(1), want, rtol=1e-10, atol=1e-12)
    assert out["clip_frac_low"].item() == pytest.approx(1 / 6)
    assert out["clip_frac_high"].item() == pytest.approx(1 / 6)
    assert out["clip_frac"].item() == pytest.approx(2 / 6)
    assert out["ratio_min"].item() == pytest.approx(0.5)
    assert out["ratio_max"].item() == pytest.approx(1.5)


def _ppo_ratio_inputs(ratios, advs):
    """PPO inputs with uniform logits (logp = -log V) and old_logp set for each ratio."""
    n = len(ratios)
    logits = torch.zeros(n, 1, V, dtype=torch.float64, requires_grad=True)
    actions = torch.zeros(n, 1, dtype=torch.long)
    old = -math.log(V) - torch.log(torch.tensor(ratios, dtype=torch.float64)).unsqueeze(1)
    values = torch.zeros(n, 1, dtype=torch.float64, requires_grad=True)
    return dict(
        logits=logits,
        values=values,
        actions=actions,
        old_logp=old,
        old_values=torch.zeros(n, 1, dtype=torch.float64),
        advantages=torch.tensor(advs, dtype=torch.float64).unsqueeze(1),
        returns=torch.zeros(n, 1, dtype=torch.float64),
        mask=torch.ones(n, 1, dtype=torch.bool),
    )


@pytest.mark.parametrize("impl", IMPLS)
def test_dual_clip_only_acts_on_negative_advantages(impl):
    """Dual-clip PPO (Ye et al. 2020, arXiv:1912.09729 Eq. 5; verl
    compute_policy_loss_vanilla, NeMo RL ClippedPGLossFn ratio_clip_c): with c = 3 the
    loss of a token is bounded by -A·c only where A < 0: r = 5, A = -1 gives 3 (5
    without dual clip) and no gradient; A > 0 and r < c tokens are unchanged."""
    ratios = [5.0, 5.0, 2.0, 0.5]
    advs = [-1.0, 1.0, -1.0, 1.0]
    per_on = [3.0, -1.2, 2.0, -0.5]
    per_off = [5.0, -1.2, 2.0, -0.5]
    for mode, per in (("on", per_on), ("off", per_off)):
        inputs = _ppo_ratio_inputs(ratios, advs)
        out = run(impl, "ppo", {"dual_clip": mode, "clip_c": 3.0, "ent_coef": 0.0}, inputs)
        assert out["policy"].item() == pytest.approx(sum(per) / 4, abs=1e-12), mode
        (g,) = torch.autograd.grad(out["loss"], [inputs["logits"]])
        g0 = g[0, 0].abs().sum().item()  # the r = 5, A = -1 token
        assert (g0 == 0.0) == (mode == "on"), mode
        assert out["dual_clip_frac"].item() == pytest.approx(0.25 if mode == "on" else 0.0)
    # with no negative advantage, dual clip changes nothing (values and gradients)
    g_all = {}
    for mode in ("on", "off"):
        inputs = make_inputs("ppo", "ragged", 5)
        inputs["advantages"] = inputs["advantages"].abs()
        inputs = with_grad(inputs, GRAD_INPUTS["ppo"], torch.float64)
        out = run(impl, "ppo", {"dual_clip": mode, "clip_c": 1.05}, inputs)
        g_all[mode] = (
            out["loss"].detach(),
            *grads(out["loss"], inputs, GRAD_INPUTS["ppo"]).values(),
        )
    for a, b in zip(g_all["on"], g_all["off"], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _drop_row(inputs: dict, i: int) -> dict:
    return {
        k: torch.cat([v[:i], v[i + 1 :]]) if v.dim() > 0 and v.shape[0] == B else v
        for k, v in inputs.items()
    }


def _mask_row(spec: str, inputs: dict, i: int) -> dict:
    out = dict(inputs)
    for k, v in inputs.items():
        if k.endswith("mask"):
            v = v.clone()
            v[i] = False
            out[k] = v
    if spec == "sft_nll":
        labels = inputs["labels"].clone()
        labels[i] = -100
        out["labels"] = labels
    return out


DROP_CASES = [
    c
    for c in CASES
    if c.spec in ZERO_WHEN_ALL_MASKED and c.spec != "dr_grpo" and not (c.spec == "ppo" and c.step)
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", DROP_CASES, ids=lambda c: c.id)
def test_masking_a_sample_equals_dropping_it(impl, case: Case):
    """Masking every token of a sample gives the loss (and gradients of the other
    samples) of the batch without it, in every aggregation mode: token means count
    only unmasked tokens, sequence means only non-empty sequences (NeMo RL sample_mask
    semantics, as seq_mean_token_sum_norm, which then divides by the constant T), and
    token_sum counts only unmasked tokens.
    (dr_grpo's B·T normaliser counts rows, as TRL's: excluded.)"""
    names = GRAD_INPUTS[case.spec]
    base = make_inputs(case.spec, "ragged", 4)
    masked = with_grad(_mask_row(case.spec, base, 1), names, torch.float64)
    dropped = with_grad(_drop_row(base, 1), names, torch.float64)
    a = run(impl, case.spec, case.params, masked, case.step)
    b = run(impl, case.spec, case.params, dropped, case.step)
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-12, atol=1e-12)
    ga = grads(a["loss"], masked, names)
    gb = grads(b["loss"], dropped, names)
    for n in names:
        torch.testing.assert_close(_drop_row({n: ga[n]}, 1)[n], gb[n], rtol=1e-12, atol=1e-12)
        assert (ga[n][1] == 0).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_k3_is_non_negative(impl):
    """k3 = exp(logr) - 1 - logr ≥ 0 (Schulman 2020; NeMo RL calculate_kl), and ≤ 10
    after the output clamp, even for log-ratios far beyond the ±20 input clamp."""
    g = torch.Generator().manual_seed(7)
    logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 40
    ref_logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 40
    inputs = dict(
        logp=logp.requires_grad_(True), ref_logp=ref_logp, mask=torch.ones(B, T, dtype=torch.bool)
    )
    out = run(impl, "kl_penalty", {"kl_type": "k3"}, inputs)
    k = out["kl_per_token"]
    assert (k >= 0).all() and (k <= 10).all()
    assert out["kl"].item() >= 0
    (gr,) = torch.autograd.grad(out["loss"], [inputs["logp"]])
    assert torch.isfinite(gr).all()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (0.5, 0.0), (0.1, 0.2)])
def test_dpo_sigmoid_at_equal_policy_and_reference_is_log2(impl, beta, eps):
    """Rafailov et al. 2023 Eq. 7 (TRL test_dpo_trainer): with π = π_ref the logit is 0
    and -(1-ε)·logσ(0) - ε·logσ(0) = log 2 for any β and label smoothing ε;
    accuracy 0 and margins 0 (TRL rewards/accuracies, rewards/margins)."""
    pc = -torch.rand(B, dtype=torch.float64) * 30
    pr = -torch.rand(B, dtype=torch.float64) * 30
    inputs = dict(
        policy_chosen_logps=pc.clone().requires_grad_(True),
        policy_rejected_logps=pr.clone().requires_grad_(True),
        reference_chosen_logps=pc.clone(),
        reference_rejected_logps=pr.clone(),
    )
    out = run(impl, "dpo", {"loss_type": "sigmoid", "beta": beta, "label_smoothing": eps}, inputs)
    assert out["loss"].item() == pytest.approx(math.log(2), abs=1e-12)
    assert out["reward_margin"].item() == pytest.approx(0.0, abs=1e-12)
    assert out["reward_accuracy"].item() == 0.0
    gc, gr = torch.autograd.grad(
        out["loss"], [inputs["policy_chosen_logps"], inputs["policy_rejected_logps"]]
    )
    # d/dz of the smoothed loss at 0 is -β(1-2ε)/2, per pair over B
    torch.testing.assert_close(
        gc,
        torch.full((B,), -beta * (1 - 2 * eps) / 2 / B, dtype=torch.float64),
        rtol=1e-10,
        atol=1e-14,
    )
    torch.testing.assert_close(gr, -gc, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("impl", IMPLS)
def test_grpo_zero_loss_with_unit_ratio_and_centred_advantages(impl):
    """GRPO (Shao et al. 2024 Eq. 3) with seq_mean_token_mean: at r = 1 each sequence's
    token mean of -A_i·r is -A_i, and the mean over sequences of group-centred
    advantages is 0, whatever the (ragged, non-empty) lengths; KL is 0 at π = π_ref."""
    g = torch.Generator().manual_seed(11)
    rewards = torch.rand(2, 3, generator=g, dtype=torch.float64)  # 2 groups of 3
    adv = (
        (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
    ).reshape(B, 1)
    logp = _neg_logp(g, B, T)
    inputs = dict(
        logp=logp.clone().requires_grad_(True),
        old_logp=logp.clone(),
        ref_logp=logp.clone(),
        advantages=adv,
        mask=_prefix_mask([7, 1, 3, 5, 2, 6], T),
    )
    out = run(impl, "grpo", {"agg": "seq_mean_token_mean"}, inputs)
    assert out["loss"].item() == pytest.approx(0.0, abs=1e-12)
    assert out["kl"].item() == pytest.approx(0.0, abs=1e-12)
    assert out["clip_frac"].item() == 0.0
    assert out["ratio_mean"].item() == pytest.approx(1.0)


# --------------------------------------------------------------------------- reference self-checks


def test_reference_sft_matches_torch_cross_entropy():
    """rl_reference.sft_nll = F.cross_entropy(ignore_index=-100, label_smoothing=ε)
    whenever some label is counted."""
    inputs = make_inputs("sft_nll", "ragged", 0)
    for eps in (0.0, 0.1):
        want = torch.nn.functional.cross_entropy(
            inputs["logits"].reshape(-1, V),
            inputs["labels"].reshape(-1),
            ignore_index=-100,
            label_smoothing=eps,
        )
        got = ref.sft_nll(**inputs, label_smoothing=eps)["loss"]
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_reference_agg_modes_match_verl_when_no_row_is_empty():
    """With no fully masked row, agg_loss equals verl 0.9 `agg_loss` (dp_size 1, no
    global batch info) literally: seq_mean_token_sum_norm is the sequence mean of the
    token sums over loss_scale_factor, T by default."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, T, generator=g, dtype=torch.float64)
    m = _prefix_mask([7, 1, 3, 5, 2, 6], T).double()
    verl = {
        "token_mean": (x * m).sum() / m.sum(),
        "token_sum": (x * m).sum(),
        "seq_mean_token_sum": (x * m).sum(-1).mean(),
        "seq_mean_token_mean": ((x * m).sum(-1) / m.sum(-1)).mean(),
        "seq_mean_token_sum_norm": (x * m).sum(-1).mean() / T,
    }
    for mode, want in verl.items():
        torch.testing.assert_close(ref.agg_loss(x, m.bool(), mode), want, rtol=1e-12, atol=0)


def test_reference_kl_estimators_match_definitions():
    """k1 = log(π/π_ref), k2 = ½ log²(π/π_ref), k3 = π_ref/π - 1 - log(π_ref/π)."""
    logp = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64)
    ref_logp = torch.tensor([-1.5, -1.0, -0.5], dtype=torch.float64)
    lr = ref_logp - logp
    torch.testing.assert_close(ref.kl_estimate(logp, ref_logp, "k1"), -lr)
    torch.testing.assert_close(ref.kl_estimate(logp, ref_logp, "k2"), lr**2 / 2)
    torch.testing.assert_close(ref.kl_estimate(logp, ref_logp, "k3"), lr.exp() - 1 - lr)


# --------------------------------------------------------------------------- compiled


class _CountingBackend:
    """A torch.compile backend that runs the captured graph as is and counts captures."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph_module, example_inputs):
        self.compilations += 1
        return graph_module.forward


@pytest.mark.parametrize(
    "spec,param_values",
    [
        (
            "ppo",
            [
                {"clip_low": 0.1, "vf_coef": 0.3},
                {"clip_high": 0.3, "ent_coef": 0.02},
                {"clip_c": 2.0, "value_clip": 0.1},
            ],
        ),
        ("grpo", [{"clip_low": 0.1, "kl_coef": 0.1}, {"clip_high": 0.28}, {"kl_coef": 0.0}]),
        ("dpo", [{"beta": 0.2}, {"beta": 0.5, "label_smoothing": 0.1}, {"beta": 0.05}]),
    ],
)
@needs_one_compilation_across_sizes
def test_compiled_no_recompilation_across_steps_and_params(spec, param_values):
    """compile=True (LANGUAGE.md run-time contract): step and params travel as 0-d
    tensors, so changing them never recompiles; values equal the eager module's."""
    backend = _CountingBackend()
    compiled = lossdsl.load(spec, compile=True, backend=backend)
    eager = lossdsl.load(spec)
    for call, params in enumerate(param_values * 2):
        inputs = make_inputs(spec, "ragged" if spec in HAS_MASK else "full", call)
        got = compiled(**inputs, step=call * 1000, params=params)
        want = eager(**inputs, step=call * 1000, params=params)
        torch.testing.assert_close(got.loss, want.loss, **F64_TOL)
    assert backend.compilations == 1


@pytest.mark.parametrize("step", [0, 10_000])  # ent_coef 0.01, then 0
def test_ppo_over_a_masked_vocabulary_equals_ppo_over_the_kept_classes(step):
    """A logit of -inf (a masked vocabulary entry) is a class of probability 0: its
    p·log p is 0, where it was 0·(-inf) = NaN in the entropy term, and in the loss even
    when ent_coef has decayed to 0."""
    inputs = make_inputs("ppo")
    kept = V - 2
    inputs["actions"] = inputs["actions"] % kept
    masked_logits = inputs["logits"].clone()
    masked_logits[..., kept:] = -math.inf
    masked = with_grad({**inputs, "logits": masked_logits}, ["logits"], torch.float64)
    dropped = with_grad(
        {**inputs, "logits": inputs["logits"][..., :kept]}, ["logits"], torch.float64
    )
    out = run_spec("ppo", {}, masked, step)
    expected = run_spec("ppo", {}, dropped, step)
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value)
    out["loss"].backward()
    expected["loss"].backward()
    torch.testing.assert_close(masked["logits"].grad[..., :kept], dropped["logits"].grad)
    assert torch.all(masked["logits"].grad[..., kept:] == 0)
