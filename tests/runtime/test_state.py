"""States, `ema` and learned params at run time (LANGUAGE.md "Version 2", State).

A state reads its value before the call; after each call in training mode it becomes its
update, clamped into its range; in eval mode it never changes; `reset_state()` restores
INIT. `ema(x, d)` is the bias-corrected moving average of x over the training calls,
this one included. A learned param is an `nn.Parameter` of the module. The references
below are plain Python loops written from those rules, compared in float64.
"""

from __future__ import annotations

import pickle

import pytest
import torch

import lossdsl
from tests.support import CountingBackend

EMA_SPEC = """
loss averaged
input x : float[N] grad
term t = mean(square(x))
metric avg = ema(detach(t), 0.9)
"""

COUNTER_SPEC = """
loss counted
input x : float[N] grad
param start = 1.0
param growth = 2.0
state level = start in [0, 100] update level * growth + mean(x)
term t = mean(square(x)) * level
metric level_before = level
"""


def f64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def batches(count: int, seed: int = 0, n: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g, dtype=torch.float64) for _ in range(count)]


def bias_corrected_ema(values: list[float], decay: float) -> list[float]:
    """m ← d·m + (1 − d)·x, then m / (1 − dⁿ) after n values (LANGUAGE.md, `ema`)."""
    averages, m = [], 0.0
    for n, value in enumerate(values, start=1):
        m = decay * m + (1 - decay) * value
        averages.append(m / (1 - decay**n))
    return averages


def mean_squares(xs: list[torch.Tensor]) -> list[float]:
    return [float((x * x).mean()) for x in xs]


# ---- ema -----------------------------------------------------------------------------------


def test_ema_equals_a_hand_written_bias_corrected_loop(write_spec):
    loss_fn = lossdsl.load(write_spec(EMA_SPEC))
    xs = batches(20)
    got = [float(loss_fn(x=x).metrics["avg"]) for x in xs]
    assert got == pytest.approx(bias_corrected_ema(mean_squares(xs), 0.9), rel=1e-12)
    assert got[0] == pytest.approx(mean_squares(xs)[0], rel=1e-15)  # the first call: x


def test_ema_survives_a_state_dict_round_trip_mid_sequence(write_spec):
    path = write_spec(EMA_SPEC)
    first, xs = lossdsl.load(path), batches(16, seed=1)
    for x in xs[:8]:
        first(x=x)
    second = lossdsl.load(path)
    second.load_state_dict(first.state_dict())
    got = [float(second(x=x).metrics["avg"]) for x in xs[8:]]
    assert got == pytest.approx(bias_corrected_ema(mean_squares(xs), 0.9)[8:], rel=1e-12)


def test_each_module_instance_keeps_its_own_average(write_spec):
    path = write_spec(EMA_SPEC)
    one, other = lossdsl.load(path), lossdsl.load(path)
    xs, ys = batches(6, seed=2), batches(6, seed=3)
    for x, y in zip(xs, ys, strict=True):
        got_one, got_other = one(x=x).metrics["avg"], other(x=3 * y).metrics["avg"]
    assert float(got_one) == pytest.approx(bias_corrected_ema(mean_squares(xs), 0.9)[-1])
    assert float(got_other) == pytest.approx(
        bias_corrected_ema(mean_squares([3 * y for y in ys]), 0.9)[-1]
    )
    assert float(got_one) != pytest.approx(float(got_other))


def test_ema_in_eval_mode_is_the_stored_average_and_x_before_any_training_call(write_spec):
    loss_fn = lossdsl.load(write_spec(EMA_SPEC)).eval()
    x, later = batches(2, seed=4)
    assert float(loss_fn(x=x).metrics["avg"]) == pytest.approx(float((x * x).mean()))
    loss_fn.train()
    loss_fn(x=x)
    loss_fn.eval()
    stored = float((x * x).mean())  # one training call so far: the average is that value
    for _ in range(3):
        assert float(loss_fn(x=later).metrics["avg"]) == pytest.approx(stored, rel=1e-12)


# ---- state declarations ----------------------------------------------------------------


def level_sequence(start: float, growth: float, xs: list[torch.Tensor]) -> list[float]:
    """level ← clamp(level · growth + mean(x), 0, 100), after each call."""
    levels, level = [], start
    for x in xs:
        level = min(max(level * growth + float(x.mean()), 0.0), 100.0)
        levels.append(level)
    return levels


def test_a_state_reads_its_value_before_the_call_and_keeps_its_update(write_spec):
    loss_fn = lossdsl.load(write_spec(COUNTER_SPEC), params={"growth": 1.5})
    xs = batches(5, seed=5)
    after = level_sequence(1.0, 1.5, xs)
    before = [1.0, *after[:-1]]
    for x, level_before, level_after in zip(xs, before, after, strict=True):
        out = loss_fn(x=x)
        assert float(out.metrics["level_before"]) == pytest.approx(level_before, rel=1e-12)
        assert float(out.loss) == pytest.approx(float((x * x).mean()) * level_before)
        assert float(out.states["level"]) == pytest.approx(level_after, rel=1e-12)


def test_an_update_is_clamped_into_the_states_range(write_spec):
    loss_fn = lossdsl.load(write_spec(COUNTER_SPEC), params={"growth": 10.0})
    levels = [float(loss_fn(x=torch.ones(3, dtype=torch.float64)).states["level"]) for _ in "abc"]
    assert levels == [11.0, 100.0, 100.0]  # 1·10 + 1, then 111 → 100


def test_eval_mode_never_changes_a_state(write_spec):
    loss_fn = lossdsl.load(write_spec(COUNTER_SPEC))
    loss_fn(x=f64(1.0, 1.0))  # level 1 → 3
    loss_fn.eval()
    for x in batches(3, seed=6):
        out = loss_fn(x=x)
        assert float(out.states["level"]) == 3.0
        assert float(out.metrics["level_before"]) == 3.0
    assert loss_fn.state_values.tolist() == [3.0]


def test_reset_state_restores_init_read_from_the_params_of_the_next_call(write_spec):
    loss_fn = lossdsl.load(write_spec(COUNTER_SPEC))
    loss_fn(x=f64(1.0))
    loss_fn(x=f64(1.0))
    loss_fn.reset_state()
    loss_fn.set_params(start=4.0)
    out = loss_fn(x=f64(0.0))
    assert float(out.metrics["level_before"]) == 4.0
    assert float(out.states["level"]) == 8.0


def test_states_and_learned_params_round_trip_through_state_dict(write_spec):
    spec = COUNTER_SPEC.replace("param growth = 2.0", "param growth = 2.0\nparam s = 0.5 learned")
    spec = spec.replace("* level\n", "* level + s\n")
    path = write_spec(spec)
    trained = lossdsl.load(path)
    trained(x=f64(1.0, 2.0))
    with torch.no_grad():
        trained.learned["s"].fill_(-0.25)
    fresh = lossdsl.load(path)
    fresh.load_state_dict(trained.state_dict())
    assert sorted(trained.state_dict()) == ["learned.s", "state_values"]
    assert fresh.state_values.tolist() == trained.state_values.tolist() == [3.5]
    assert fresh.learned["s"].item() == -0.25
    assert float(fresh(x=f64(0.0)).metrics["level_before"]) == 3.5


def test_a_state_is_a_float64_buffer_that_module_casts_move(write_spec):
    loss_fn = lossdsl.load(write_spec(COUNTER_SPEC))
    assert loss_fn.state_values.dtype == torch.float64
    assert "state_values" in dict(loss_fn.named_buffers())
    loss_fn.float()
    assert loss_fn.state_values.dtype == torch.float32
    out = loss_fn(x=torch.tensor([1.0]))
    assert loss_fn.state_values.dtype == torch.float32  # the graph writes the buffer's dtype
    assert float(out.states["level"]) == 3.0


def test_loss_output_unpacks_as_four_items_and_carries_states(write_spec):
    out = lossdsl.load(write_spec(COUNTER_SPEC))(x=f64(1.0))
    loss, terms, weights, metrics = out
    assert set(out.states) == {"level"}
    replaced = out._replace(metrics={})
    assert replaced.metrics == {}
    assert float(replaced.states["level"]) == 3.0
    assert float(pickle.loads(pickle.dumps(out)).states["level"]) == 3.0
    assert not out.states["level"].requires_grad


# ---- learned params --------------------------------------------------------------------------

LEARNED_SPEC = """
loss weighted
input pred   : float[N] grad
input target : float[N]
param s = 0 learned in [-3, 3]
term fit = mean(square(pred - target))
term reg = s
minimize exp(-s) * fit + reg
"""


def test_a_learned_param_is_a_parameter_the_optimizer_trains(write_spec):
    loss_fn = lossdsl.load(write_spec(LEARNED_SPEC)).double()
    assert [name for name, _ in loss_fn.named_parameters()] == ["learned.s"]
    pred, target = f64(0.0, 0.0), f64(2.0, 2.0)  # fit = 4: exp(-s)·4 + s is least at s = log 4
    optimizer = torch.optim.SGD(loss_fn.parameters(), lr=0.5)
    for _ in range(200):
        out = loss_fn(pred=pred, target=target)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert float(out.states["s"]) == pytest.approx(float(torch.log(torch.tensor(4.0))), rel=1e-6)
    assert float(out.weights["fit"]) == pytest.approx(0.25, rel=1e-5)  # exp(-s), detached


def test_a_learned_param_is_clamped_into_its_range_where_it_is_read(write_spec):
    loss_fn = lossdsl.load(write_spec(LEARNED_SPEC)).double()
    with torch.no_grad():
        loss_fn.learned["s"].fill_(7.0)
    out = loss_fn(pred=f64(0.0), target=f64(1.0))
    assert float(out.states["s"]) == 3.0
    assert float(out.terms["reg"]) == 3.0
    out.loss.backward()
    assert float(loss_fn.learned["s"].grad) == 0.0  # clamp passes no gradient where it binds


def test_set_params_does_not_apply_to_a_learned_param(write_spec):
    loss_fn = lossdsl.load(write_spec(LEARNED_SPEC))
    with pytest.raises(lossdsl.InputError, match="`s` is not a param"):
        loss_fn.set_params(s=1.0)


# ---- variants, slices, compilation --------------------------------------------------------

DERIVED_SPEC = """
loss derived
input logp    : float[B] grad in (-inf, 0] = gather(log_softmax(logits, dim=V), actions, dim=V)
input logits  : float[B, V] grad
input actions : int[B] in [0, V)
state calls = 0 update calls + 1
term nll = -mean(logp)
metric avg = ema(detach(nll), 0.5)
"""


def test_derived_input_variants_share_the_modules_states(write_spec):
    loss_fn = lossdsl.load(write_spec(DERIVED_SPEC)).double()
    g = torch.Generator().manual_seed(7)
    actions = torch.tensor([0, 2, 1, 1])
    nlls = []
    for call in range(4):
        logits = torch.randn(4, 3, generator=g, dtype=torch.float64)
        logp = torch.log_softmax(logits, -1).gather(-1, actions[:, None])[:, 0]
        if call % 2:  # the variant that computes logp from logits, then the one given logp
            out = loss_fn(logits=logits, actions=actions)
        else:
            out = loss_fn(logp=logp)
        nlls.append(float(-logp.mean()))
    assert float(out.states["calls"]) == 4.0
    assert float(out.metrics["avg"]) == pytest.approx(bias_corrected_ema(nlls, 0.5)[-1], rel=1e-12)


CHOICE_SPEC = """
loss chosen
input x : float[N] grad
param scale = "raw" in {"raw", "ema"}
state calls = 0 update calls + 1
term t = select(scale,
    raw = mean(square(x)),
    ema = mean(square(x)) / max(ema(mean(square(detach(x))), 0.5), 1e-8))
"""


def test_a_static_choice_rebuild_keeps_the_states_both_variants_have(write_spec):
    loss_fn = lossdsl.load(write_spec(CHOICE_SPEC)).double()
    loss_fn(x=f64(1.0))
    loss_fn(x=f64(1.0))
    loss_fn.set_params(scale="ema")
    out = loss_fn(x=f64(2.0))
    assert float(out.states["calls"]) == 3.0
    assert float(out.states["t.ema"]) == 4.0  # the new average starts with this call
    loss_fn.set_params(scale="raw")
    assert float(loss_fn(x=f64(1.0)).states["calls"]) == 4.0


SLICED_SPEC = """
loss sliced
input logits  : float[B, T, V] grad
input actions : int[B, T] in [0, V)
input mask    : bool[B, T]
param s = 0.25 learned in [-5, 5]
state level = 0.5 in [0, 10] update level + 0.1 * detach(nll)
let lp = gather(log_softmax(logits, dim=V), actions, dim=V)
term nll = -sum(lp, where=mask) / max(count(mask), 1)
term scaled = nll / max(ema(detach(nll), 0.9), 1e-6)
term reg = s
minimize exp(-s) * nll + reg + level * scaled
"""


def sliced_inputs(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "logits": torch.randn(3, 4, 7, generator=g, dtype=torch.float64, requires_grad=True),
        "actions": torch.randint(0, 7, (3, 4), generator=g),
        "mask": torch.rand(3, 4, generator=g) > 0.2,
    }


@pytest.mark.parametrize("chunk", [1, 5])
def test_sliced_modules_update_states_as_the_unsliced_one_does(write_spec, chunk):
    path = write_spec(SLICED_SPEC)
    whole, sliced = lossdsl.load(path).double(), lossdsl.load(path, chunk=chunk).double()
    for seed in range(3):
        x, y = sliced_inputs(seed), sliced_inputs(seed)
        want, got = whole(**x), sliced(**y)
        want.loss.backward()
        got.loss.backward()
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(y["logits"].grad, x["logits"].grad, rtol=1e-12, atol=1e-12)
        for name, value in want.states.items():
            torch.testing.assert_close(got.states[name], value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sliced.learned["s"].grad, whole.learned["s"].grad)
    torch.testing.assert_close(sliced.state_values, whole.state_values)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_compiled_state_updates_are_kept_in_float64_and_float32(write_spec, dtype):
    """aot_eager is one of the backends that silently drops an in-place update of a 0-d
    float64 tensor inside a compiled region: the graph returns the new values instead."""
    from torch._dynamo.utils import counters

    path = write_spec(SLICED_SPEC)
    eager = lossdsl.load(path).to(dtype)
    torch._dynamo.reset()
    counters.clear()
    compiled = lossdsl.load(path, compile=True, backend="aot_eager").to(dtype)
    for seed in range(4):
        x = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sliced_inputs(seed).items()}
        want, got = eager(**x), compiled(**x)
        torch.testing.assert_close(got.loss, want.loss)
        for name, value in want.states.items():
            torch.testing.assert_close(got.states[name], value)
    torch.testing.assert_close(compiled.state_values, eager.state_values)
    assert float(compiled.state_values[0]) != 0.0  # the ema's average moved
    assert counters["stats"]["unique_graphs"] == 1


def test_compiled_states_need_no_new_compilation_in_eval_mode_or_after_reset(write_spec):
    backend = CountingBackend()
    loss_fn = lossdsl.load(write_spec(SLICED_SPEC), compile=True, backend=backend).double()
    for seed in range(3):
        loss_fn(**sliced_inputs(seed))
    loss_fn.eval()
    loss_fn(**sliced_inputs(4))
    loss_fn.train()
    loss_fn.reset_state()
    loss_fn(**sliced_inputs(5))
    assert backend.compilations == 1
