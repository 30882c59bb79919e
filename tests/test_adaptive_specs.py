"""The standard specs that adapt across calls, against references written from their
sources (tests/reference/rl_reference.py for PPO's KL controller and BCO-pair) and from
the formulas in each spec's docstring, over sequences of calls, in float64.

- `ppo` with kl_ctl="adaptive": β follows Ziegler et al.'s controller exactly, eagerly
  and compiled, without recompiling; eval mode leaves it; `reset_state` restores it.
- `bco_pair`: TRL's loss with its running reward mean, batch after batch.
- `uncertainty_weighting`: trained on two tasks of known noise, each learned variance
  exp(s) ends within 10 % of the task's noise variance σ².
- `curriculum`, `entropy_target`, `ema_normalised`: their states step by step.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch._dynamo.utils import counters

import lossdsl
from tests.reference import rl_reference as ref

B, T, V = 6, 5, 9


def _f64(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# ---- PPO's adaptive KL controller ------------------------------------------------------------

KL_PARAMS = {"kl_ctl": "adaptive", "kl_coef": 0.2, "kl_target": 1.5, "kl_horizon": 40}


def ppo_batch(step: int) -> dict[str, torch.Tensor]:
    """A PPO batch whose reference policy drifts further from the policy with the step, so
    that the KL the controller reads goes from well below its target to well above."""
    g = torch.Generator().manual_seed(100 + step)
    logits = _f64(g, B, T, V)
    actions = torch.randint(0, V, (B, T), generator=g)
    logp = torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    spread = 0.05 + 0.04 * step
    ref_logp = torch.clamp(logp + spread * _f64(g, B, T), max=-1e-3)
    values = _f64(g, B, T)
    return {
        "logits": logits.requires_grad_(),
        "values": values.requires_grad_(),
        "actions": actions,
        "old_logp": logp.detach() + 0.1 * _f64(g, B, T),
        "old_values": values.detach(),
        "advantages": _f64(g, B, T),
        "returns": _f64(g, B, T),
        "mask": torch.rand(B, T, generator=g) > 0.2,
        "ref_logp": ref_logp,
    }


def controller_kls(batches: list[dict]) -> list[float]:
    """TRL's `mean_kl` of each batch: the per-sequence sum of the k3 estimate, averaged."""
    kls = []
    for x in batches:
        logp = torch.log_softmax(x["logits"].detach(), -1)
        logp = logp.gather(-1, x["actions"].unsqueeze(-1)).squeeze(-1)
        kl_tok = ref.kl_estimate(logp, x["ref_logp"], "k3")
        kls.append(float(ref.sequence_kl(kl_tok, x["mask"])))
    return kls


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_adaptive_kl_beta_follows_the_controller_over_fifty_calls(compiled):
    batches = [ppo_batch(step) for step in range(50)]
    kls = controller_kls(batches)
    assert min(kls) < 0.8 * KL_PARAMS["kl_target"] < 1.2 * KL_PARAMS["kl_target"] < max(kls)
    betas = ref.adaptive_kl_beta(0.2, kls, B, KL_PARAMS["kl_target"], KL_PARAMS["kl_horizon"])
    torch._dynamo.reset()
    counters.clear()
    options = {"compile": True, "backend": "aot_eager"} if compiled else {}
    loss_fn = lossdsl.load("ppo", params=KL_PARAMS, **options)
    before = 0.2
    for x, kl, beta in zip(batches, kls, betas, strict=True):
        out = loss_fn(**x)
        assert out.weights["kl"].item() == pytest.approx(before, rel=1e-12, abs=0)
        assert out.states["kl_beta"].item() == pytest.approx(beta, rel=1e-12, abs=0)
        assert out.metrics["kl_per_seq"].item() == pytest.approx(kl, rel=1e-12)
        out.loss.backward()
        before = beta
    assert loss_fn.state_values.item() == pytest.approx(betas[-1], rel=1e-12, abs=0)
    if compiled:
        assert counters["stats"]["unique_graphs"] == 1


def test_adaptive_kl_beta_weights_the_kl_term_in_the_loss():
    x = ppo_batch(3)
    adaptive = lossdsl.load("ppo", params=KL_PARAMS)
    fixed = lossdsl.load("ppo", params={"kl_coef": 0.2})
    first, again = adaptive(**x), adaptive(**x)
    expected = fixed(**x)
    torch.testing.assert_close(first.loss, expected.loss, rtol=1e-12, atol=1e-12)
    beta = first.states["kl_beta"]  # the second call reads the updated β
    torch.testing.assert_close(
        again.loss, expected.loss + (beta - 0.2) * expected.terms["kl"], rtol=1e-12, atol=1e-12
    )


def test_eval_mode_leaves_the_kl_beta_and_reset_state_restores_kl_coef():
    loss_fn = lossdsl.load("ppo", params=KL_PARAMS)
    for step in range(3):
        loss_fn(**ppo_batch(step))
    trained = loss_fn.state_values.clone()
    loss_fn.eval()
    for step in range(3, 6):
        out = loss_fn(**ppo_batch(step))
        assert out.states["kl_beta"].item() == trained.item()
    assert torch.equal(loss_fn.state_values, trained)
    loss_fn.train()
    loss_fn.reset_state()
    assert loss_fn(**ppo_batch(7)).weights["kl"].item() == 0.2


def test_ppo_at_its_defaults_has_no_kl_term_in_its_loss():
    x = ppo_batch(40)
    out = lossdsl.load("ppo")(**x)
    assert out.weights["kl"].item() == 0.0
    assert out.terms["kl"].item() > 0.0  # reported, as in grpo
    assert out.states == {"kl_beta": torch.tensor(0.0, dtype=torch.float64)}


# ---- BCO-pair --------------------------------------------------------------------------------


def bco_batch(index: int, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(200 + index)
    policy_chosen = -torch.rand(B, generator=g, dtype=torch.float64) * 20 - 0.1
    policy_rejected = -torch.rand(B, generator=g, dtype=torch.float64) * 20 - 0.1
    return {
        "reference_chosen_logps": (policy_chosen + 2 * _f64(g, B) - 1).clamp(max=-1e-3),
        "reference_rejected_logps": (policy_rejected + 2 * _f64(g, B) + 1).clamp(max=-1e-3),
        "policy_chosen_logps": policy_chosen.to(dtype).requires_grad_(),
        "policy_rejected_logps": policy_rejected.to(dtype).requires_grad_(),
    }


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_bco_pair_equals_trls_formula_on_a_sequence_of_batches(beta):
    loss_fn = lossdsl.load("bco_pair", params={"beta": beta})
    running = ref.RunningMoments()
    for index in range(8):
        x, y = bco_batch(index), bco_batch(index)
        got = loss_fn(**x)
        want = ref.bco_pair(**y, running=running, beta=beta)
        torch.testing.assert_close(got.loss, want["loss"], rtol=1e-12, atol=1e-12)
        for name in ("rewards_chosen", "rewards_rejected", "reward_margin", "running_reward"):
            torch.testing.assert_close(got.metrics[name], want[name], rtol=1e-12, atol=1e-12)
        got.loss.backward()
        want["loss"].backward()
        for name in ("policy_chosen_logps", "policy_rejected_logps"):
            torch.testing.assert_close(x[name].grad, y[name].grad, rtol=1e-12, atol=1e-14)
    assert loss_fn.state_values.tolist() == pytest.approx([running.mean, 8.0], rel=1e-12)


# ---- uncertainty weighting -----------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Small tensors run fastest on one thread (the machine may be busy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_uncertainty_weighting_learns_each_tasks_noise_variance(one_thread):
    """Two linear regressions sharing inputs, with noise σ = 0.5 and σ = 2.0; a linear model
    and the learned log-variances trained together by Adam. At the optimum exp(s) = L, the
    task's mean squared error, which the fitted model brings to about σ²."""
    g = torch.Generator().manual_seed(0)
    n = 2048
    x = _f64(g, n, 3)
    y_a = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64) + 0.5 * _f64(g, n)
    y_b = x @ torch.tensor([-0.5, 1.0, 2.0], dtype=torch.float64) + 2.0 * _f64(g, n)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2, dtype=torch.float64)
    loss_fn = lossdsl.load("uncertainty_weighting").double()
    optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=0.1)
    for _ in range(200):
        pred = model(x)
        out = loss_fn(pred_a=pred[:, 0], target_a=y_a, pred_b=pred[:, 1], target_b=y_b)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    variance_a, variance_b = (math.exp(out.states[s].item()) for s in ("s_a", "s_b"))
    assert variance_a == pytest.approx(0.25, rel=0.1)
    assert variance_b == pytest.approx(4.0, rel=0.1)
    assert out.weights["task_a"].item() > 10 * out.weights["task_b"].item()


# ---- curriculum, entropy target, EMA-normalised objectives ----------------------------------


def test_the_curriculum_level_rises_while_the_average_loss_is_below_its_threshold():
    """level ← level + increment after a call whose ema(task, 0.9) is below advance_below."""
    loss_fn = lossdsl.load("curriculum", params={"advance_below": 0.8, "increment": 0.1})
    difficulty = torch.tensor([0.1, 0.25, 0.45, 0.65, 0.85], dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 1, 0])
    level, average, calls = 0.2, 0.0, 0
    for scale in (6.0, 6.0, 0.1, 0.1, 0.1, 0.1, 0.1, 3.0):
        logits = torch.full((5, 3), -scale, dtype=torch.float64)
        logits[torch.arange(5), labels] = scale  # confident: a small loss, or a large one
        logits[:, 0] += 0.3
        admitted = difficulty <= level
        per_sample = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        task = float(per_sample[admitted].mean()) if admitted.any() else 0.0
        calls += 1
        average = 0.9 * average + 0.1 * task
        corrected = average / (1 - 0.9**calls)
        out = loss_fn(logits=logits, labels=labels, difficulty=difficulty)
        assert out.loss.item() == pytest.approx(task, rel=1e-12)
        fraction = float(admitted.double().mean())
        assert out.metrics["admitted_fraction"].item() == pytest.approx(fraction)
        assert out.metrics["loss_average_now"].item() == pytest.approx(corrected, rel=1e-12)
        level = min(level + 0.1, 1.0) if corrected < 0.8 else level
        assert out.states["level"].item() == pytest.approx(level, rel=1e-12)
    assert 0.5 < level < 1.0  # it rose, and stopped where the loss grew


def test_the_entropy_coefficient_moves_towards_the_target_entropy():
    """ent_coef ← clamp(ent_coef · (1 + clamp(ent_lr · (target − H), −0.2, 0.2)), 1e-6, 1)."""
    loss_fn = lossdsl.load("entropy_target", params={"ent_target": 1.0, "ent_lr": 0.5})
    g = torch.Generator().manual_seed(5)
    coef = 0.01
    for sharpness in (0.1, 0.1, 3.0, 3.0, 1.0):
        logits = sharpness * _f64(g, B, T, V)
        x = {
            "logits": logits,
            "actions": torch.randint(0, V, (B, T), generator=g),
            "old_logp": -torch.rand(B, T, generator=g, dtype=torch.float64) - 1,
            "advantages": _f64(g, B, T),
            "mask": torch.rand(B, T, generator=g) > 0.3,
        }
        out = loss_fn(**x)
        probs = torch.softmax(logits, -1)
        token_entropy = -(probs * torch.log_softmax(logits, -1)).sum(-1)
        entropy = float(token_entropy[x["mask"]].mean())
        assert out.terms["entropy"].item() == pytest.approx(entropy, rel=1e-12)
        assert out.weights["entropy"].item() == pytest.approx(-coef, rel=1e-12)
        coef = min(max(coef * (1 + min(max(0.5 * (1.0 - entropy), -0.2), 0.2)), 1e-6), 1.0)
        assert out.states["ent_coef"].item() == pytest.approx(coef, rel=1e-12)


def test_ema_normalised_terms_are_their_raw_values_over_their_moving_averages():
    loss_fn = lossdsl.load("ema_normalised")
    g = torch.Generator().manual_seed(9)
    raw: dict[str, list[float]] = {"ce_raw": [], "regression_raw": []}
    for call in range(6):
        x = {
            "logits": (call + 1.0) * _f64(g, 8, 4),
            "labels": torch.randint(0, 4, (8,), generator=g),
            "values": _f64(g, 8),
            "returns": 10 * _f64(g, 8),
        }
        out = loss_fn(**x)
        for name, term in (("ce_raw", "classification"), ("regression_raw", "regression")):
            raw[name].append(out.metrics[name].item())
            m = sum(0.01 * 0.99 ** (len(raw[name]) - 1 - i) * v for i, v in enumerate(raw[name]))
            average = m / (1 - 0.99 ** len(raw[name]))
            assert out.terms[term].item() == pytest.approx(raw[name][-1] / average, rel=1e-12)
        if call == 0:  # the first call: each term over itself
            assert out.terms["classification"].item() == pytest.approx(1.0, rel=1e-12)
