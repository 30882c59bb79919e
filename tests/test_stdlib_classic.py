"""The classic standard library equals torch's losses, in value and gradient.

Every classic spec in `specs/` is compared with the matching
`torch.nn.functional` loss (torchvision's sigmoid focal loss, the loss-design
guide's Cauchy loss and log(cosh) are written out below from their formulas)
in float64: the loss and its gradient with respect to every `grad` input agree
to 1e-10 relative to the size of the reference. Inputs are random with edge
cases mixed in: exact zero residuals, logits of +-1e4, ignored class indices,
probabilities of exactly 0 and 1, variances below `eps`, hinge ties. Each
param is tried at its default, set at load time and overridden for one call.

Where lossdsl and torch differ on purpose, a test says so by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import lossdsl

SPECS = Path(__file__).resolve().parents[1] / "specs"
RTOL = 1e-10

# F.kl_div warns that reduction="mean" is not the KL divergence; "mean" is what the spec matches.
pytestmark = pytest.mark.filterwarnings(
    "ignore:reduction. 'mean' divides the total loss:UserWarning"
)

Tensor = torch.Tensor
Inputs = dict[str, Tensor]
Params = dict[str, object]


# ---- how two results are compared ---------------------------------------------------------


def assert_close_relative(actual: Tensor, expected: Tensor, what: str) -> None:
    """Equal to RTOL relative to the reference's largest entry (so tiny entries of a
    gradient computed by an equivalent formula may differ by rounding)."""
    assert actual.dtype == torch.float64, f"{what}: computed in {actual.dtype}, not float64"
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(
        actual,
        expected,
        rtol=RTOL,
        atol=RTOL * scale,
        equal_nan=False,
        msg=lambda m: f"{what}: {m}",
    )


# ---- the cases -----------------------------------------------------------------------------


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def _rand(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


def _signs(gen: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=gen).to(torch.float64) * 2 - 1


def regression_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Residuals from tiny to large (beyond any delta tried), four exactly zero."""
    input = _randn(gen, 3, 4) * 2
    target = input + _randn(gen, 3, 4) * torch.tensor([0.01, 0.5, 2.0, 5.0], dtype=torch.float64)
    target[0, :] = input[0, :]  # zero residuals
    return {"input": input, "target": target}


def class_index_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Logits [2, 3, C=5] with one row at +-1e4, class indices with some equal to ignore_index."""
    input = _randn(gen, 2, 3, 5) * 3
    input[0, 1] = torch.tensor([1e4, -1e4, 0.0, 1e4, -1e4])
    input[1, 2, 3] = -1e4
    target = torch.randint(0, 5, (2, 3), generator=gen)
    target[1, 2] = 3  # the target class has logit -1e4: loss ~ 2e4
    target[0, 0] = int(params["ignore_index"])
    target[1, 0] = int(params["ignore_index"])
    return {"input": input, "target": target}


def log_prob_inputs(gen: torch.Generator, params: Params) -> Inputs:
    inputs = class_index_inputs(gen, params)
    return {**inputs, "input": F.log_softmax(inputs["input"], dim=-1)}


def probability_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Probabilities in (0.02, 0.98), soft targets in [0, 1]."""
    return {"input": 0.02 + 0.96 * _rand(gen, 3, 4), "target": _rand(gen, 3, 4)}


def weighted_probability_inputs(gen: torch.Generator, params: Params) -> Inputs:
    return {**probability_inputs(gen, params), "weight": 2 * _rand(gen, 3, 4)}


def logit_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Logits with +-1e4 entries against targets 0 and 1 (agreeing and disagreeing),
    soft targets elsewhere."""
    input = _randn(gen, 3, 4) * 4
    target = _rand(gen, 3, 4)
    input[0] = torch.tensor([1e4, -1e4, 1e4, -1e4])
    target[0] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    return {"input": input, "target": target}


def weighted_logit_inputs(gen: torch.Generator, params: Params) -> Inputs:
    return {**logit_inputs(gen, params), "weight": 2 * _rand(gen, 3, 4)}


def binary_logit_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """As `logit_inputs` with hard 0/1 targets (torchvision's focal loss takes labels)."""
    inputs = logit_inputs(gen, params)
    return {**inputs, "target": (inputs["target"] > 0.5).to(torch.float64)}


def distribution_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Log-probabilities against probabilities with exact zeros (xlogy's 0 log 0 = 0)."""
    target = F.softmax(_randn(gen, 3, 5), dim=-1)
    target[0, :2] = 0.0
    target[0] = target[0] / target[0].sum()
    return {"input": F.log_softmax(_randn(gen, 3, 5), dim=-1), "target": target}


def ranking_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Pairs with targets +-1; two pairs tie exactly (the hinge's kink when margin is 0)."""
    input1, input2 = _randn(gen, 3, 4), _randn(gen, 3, 4)
    input2[0, :2] = input1[0, :2]
    return {"input1": input1, "input2": input2, "target": _signs(gen, 3, 4)}


def distance_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Non-negative distances on both sides of the margin, targets +-1."""
    input = 3 * _rand(gen, 3, 4)
    return {"input": input, "target": _signs(gen, 3, 4)}


def signed_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Scores with +-1e4 entries where torch's log1p(exp(-y x)) is still finite (y x = +1e4)."""
    input, target = _randn(gen, 3, 4) * 3, _signs(gen, 3, 4)
    input[0, 0], target[0, 0] = 1e4, 1.0
    input[0, 1], target[0, 1] = -1e4, -1.0
    return {"input": input, "target": target}


def count_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Log rates against counts 0, 1 and above (the Stirling term only counts above 1)."""
    target = torch.randint(0, 8, (3, 4), generator=gen).to(torch.float64)
    target[0, :3] = torch.tensor([0.0, 1.0, 2.0])
    return {"input": _randn(gen, 3, 4), "target": target}


def gaussian_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Variances mostly above eps, three below it (clamped in value, straight-through
    in gradient)."""
    var = 0.1 + _rand(gen, 3, 4)
    var[0, :3] = torch.tensor([0.0, 1e-9, 0.5 * float(params["eps"])])
    return {"input": _randn(gen, 3, 4), "target": _randn(gen, 3, 4), "var": var}


def triplet_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Triplets whose negative is nearer than the positive (the hinge active), far beyond
    the margin (inactive), one positive equal to its anchor (distance from eps alone), and
    one positive farther from the negative than the anchor (the swap picks it)."""
    anchor, positive, negative = (_randn(gen, 6, 4) for _ in range(3))
    positive[0] = anchor[0]
    negative[1] = anchor[1] + 10.0
    negative[2] = anchor[2] + 0.05 * _randn(gen, 4)
    positive[3] = negative[3] + 0.1 * _randn(gen, 4)
    return {"anchor": anchor, "positive": positive, "negative": negative}


def cosine_pair_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Pairs with targets 1 and -1, a vector of norm ~1e-4 (torch's 1e-12 under the root
    moves its cosine by ~1e-4), opposite vectors, and one target of 0 (which counts
    nothing, in torch too). No cosine equals the margin: the hinge's kink, where torch's
    clamp passes the gradient and relu does not."""
    input1, input2 = _randn(gen, 6, 4), _randn(gen, 6, 4)
    input1[0] = 1e-4 * input1[0]
    input2[1] = -2.0 * input1[1]
    target = _signs(gen, 6)
    target[5] = 0.0
    return {"input1": input1, "input2": input2, "target": target}


def multi_class_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Scores [5, 4] and a target class per row; one row far ahead of the others (no
    hinge active), one far behind (every hinge active)."""
    input = _randn(gen, 5, 4)
    target = torch.randint(0, 4, (5,), generator=gen)
    target[0], target[1] = 2, 0
    input[0, 2] = 10.0
    input[1, 0] = -10.0
    return {"input": input, "target": target}


def weighted_multi_class_inputs(gen: torch.Generator, params: Params) -> Inputs:
    return {**multi_class_inputs(gen, params), "weight": 2 * _rand(gen, 4)}


def multi_label_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Logits [4, 5] with +-1e4 entries against labels 0 and 1, soft labels elsewhere."""
    input = _randn(gen, 4, 5) * 3
    target = _rand(gen, 4, 5)
    input[0] = torch.tensor([1e4, -1e4, 1e4, -1e4, 0.0])
    target[0] = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0])
    return {"input": input, "target": target}


def weighted_multi_label_inputs(gen: torch.Generator, params: Params) -> Inputs:
    return {**multi_label_inputs(gen, params), "weight": 2 * _rand(gen, 5)}


def label_list_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Scores [5, 5] and class lists ended by -1: entries after the -1 are ignored, an empty
    list, a class listed twice, and every class listed (no class outside the set)."""
    input = _randn(gen, 5, 5) * 2
    target = torch.tensor(
        [
            [3, 0, -1, 1, 2],
            [-1, 2, 3, 4, 0],
            [1, 1, 4, -1, -1],
            [0, 1, 2, 3, 4],
            [4, -1, 0, 0, 0],
        ]
    )
    return {"input": input, "target": target}


def rate_inputs(gen: torch.Generator, params: Params) -> Inputs:
    """Rates (one exactly 0, where only eps keeps the log finite) against counts 0, 1 and
    above."""
    inputs = count_inputs(gen, params)
    rate = 0.1 + 3 * _rand(gen, 3, 4)
    rate[1, 0] = 0.0
    inputs["target"][1, 0] = 0.0
    return {**inputs, "input": rate}


# ---- the references --------------------------------------------------------------------------


def torchvision_sigmoid_focal_loss(
    inputs: Tensor, targets: Tensor, alpha: float, gamma: float
) -> Tensor:
    """torchvision.ops.sigmoid_focal_loss (torchvision/ops/focal_loss.py), reduction="mean"."""
    p = torch.sigmoid(inputs)
    ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss.mean()


def guide_cauchy_loss(predictions: Tensor, targets: Tensor, alpha: float) -> Tensor:
    """The loss-design guide's RobustLoss.cauchy_loss, with its `alpha` as a parameter."""
    error = predictions - targets
    return torch.log(1 + (error / alpha) ** 2).mean()


def log_cosh_reference(input: Tensor, target: Tensor) -> Tensor:
    """mean(log(cosh(input - target))), literally (fine for the moderate residuals used)."""
    return torch.log(torch.cosh(input - target)).mean()


def classes_first(input: Tensor) -> Tensor:
    """lossdsl puts classes last ([..., C]); torch wants [N, C]."""
    return input.reshape(-1, input.shape[-1])


@dataclass(frozen=True)
class Case:
    """A spec, how to make its inputs, the torch reference, and the params to try."""

    spec: str
    inputs: Callable[[torch.Generator, Params], Inputs]
    reference: Callable[[Inputs, Params], Tensor]
    grad: tuple[str, ...] = ("input",)  # the spec's `grad` inputs
    defaults: Params = field(default_factory=dict)
    overrides: tuple[tuple[str, object], ...] = ()
    id: str = ""

    def __str__(self) -> str:
        return self.id or self.spec


def poisson_case(
    spec: str, inputs: Callable[[torch.Generator, Params], Inputs], log_input: bool
) -> Case:
    """`F.poisson_nll_loss` of log-rates (`poisson_nll`) or of rates (`poisson_nll_rate`)."""
    return Case(
        spec,
        inputs,
        lambda x, p: F.poisson_nll_loss(
            x["input"],
            x["target"],
            log_input=log_input,
            full=p["full"] == "on",
            eps=p["eps"],
            reduction=p["reduction"],
        ),
        defaults={"full": "off", "eps": 1e-8, "reduction": "mean"},
        overrides=(("full", "on"), ("eps", 0.1), ("reduction", "sum")),
    )


CASES = [
    Case("mse", regression_inputs, lambda x, p: F.mse_loss(x["input"], x["target"])),
    Case("l1", regression_inputs, lambda x, p: F.l1_loss(x["input"], x["target"])),
    Case(
        "huber",
        regression_inputs,
        lambda x, p: F.huber_loss(x["input"], x["target"], delta=p["delta"]),
        defaults={"delta": 1.0},
        overrides=(("delta", 0.3), ("delta", 4.0)),
    ),
    Case(
        "smooth_l1",
        regression_inputs,
        lambda x, p: F.smooth_l1_loss(x["input"], x["target"], beta=p["beta"]),
        defaults={"beta": 1.0},
        overrides=(("beta", 0.3), ("beta", 0.0)),
    ),
    Case(
        "cauchy",
        regression_inputs,
        lambda x, p: guide_cauchy_loss(x["input"], x["target"], p["alpha"]),
        defaults={"alpha": 1.0},
        overrides=(("alpha", 0.5),),
    ),
    Case("log_cosh", regression_inputs, lambda x, p: log_cosh_reference(x["input"], x["target"])),
    Case(
        "cross_entropy",
        class_index_inputs,
        lambda x, p: F.cross_entropy(
            classes_first(x["input"]),
            x["target"].reshape(-1),
            ignore_index=int(p["ignore_index"]),
            label_smoothing=p["label_smoothing"],
        ),
        defaults={"ignore_index": -100, "label_smoothing": 0.0},
        overrides=(("ignore_index", 2), ("label_smoothing", 0.2)),
    ),
    Case(
        "nll",
        log_prob_inputs,
        lambda x, p: F.nll_loss(
            classes_first(x["input"]), x["target"].reshape(-1), ignore_index=int(p["ignore_index"])
        ),
        defaults={"ignore_index": -100},
        overrides=(("ignore_index", 1),),
    ),
    Case(
        "bce",
        probability_inputs,
        lambda x, p: F.binary_cross_entropy(x["input"], x["target"]),
    ),
    Case(
        "bce",
        weighted_probability_inputs,
        lambda x, p: F.binary_cross_entropy(x["input"], x["target"], weight=x["weight"]),
        id="bce-weighted",
    ),
    Case(
        "bce_with_logits",
        logit_inputs,
        lambda x, p: F.binary_cross_entropy_with_logits(
            x["input"], x["target"], pos_weight=torch.tensor(p["pos_weight"], dtype=torch.float64)
        ),
        defaults={"pos_weight": 1.0},
        overrides=(("pos_weight", 3.0), ("pos_weight", 0.0)),
    ),
    Case(
        "bce_with_logits",
        weighted_logit_inputs,
        lambda x, p: F.binary_cross_entropy_with_logits(
            x["input"],
            x["target"],
            weight=x["weight"],
            pos_weight=torch.tensor(p["pos_weight"], dtype=torch.float64),
        ),
        defaults={"pos_weight": 1.0},
        overrides=(("pos_weight", 3.0),),
        id="bce_with_logits-weighted",
    ),
    Case(
        "focal",
        binary_logit_inputs,
        lambda x, p: torchvision_sigmoid_focal_loss(
            x["input"], x["target"], p["alpha"], p["gamma"]
        ),
        defaults={"alpha": 0.25, "gamma": 2.0},
        overrides=(("alpha", 0.6), ("alpha", -1.0), ("gamma", 0.0), ("gamma", 1.5)),
    ),
    Case(
        "kl_div",
        distribution_inputs,
        lambda x, p: F.kl_div(x["input"], x["target"], reduction="mean", log_target=False),
    ),
    Case(
        "margin_ranking",
        ranking_inputs,
        lambda x, p: F.margin_ranking_loss(
            x["input1"], x["input2"], x["target"], margin=p["margin"]
        ),
        grad=("input1", "input2"),
        defaults={"margin": 0.0},
        overrides=(("margin", 0.5),),
    ),
    Case(
        "hinge_embedding",
        distance_inputs,
        lambda x, p: F.hinge_embedding_loss(x["input"], x["target"], margin=p["margin"]),
        defaults={"margin": 1.0},
        overrides=(("margin", 2.0),),
    ),
    Case(
        "soft_margin",
        signed_inputs,
        lambda x, p: F.soft_margin_loss(x["input"], x["target"]),
    ),
    poisson_case("poisson_nll", count_inputs, log_input=True),
    Case(
        "gaussian_nll",
        gaussian_inputs,
        lambda x, p: F.gaussian_nll_loss(
            x["input"], x["target"], x["var"], full=p["full"] == "on", eps=p["eps"]
        ),
        grad=("input", "var"),
        defaults={"full": "off", "eps": 1e-6},
        overrides=(("full", "on"), ("eps", 0.05)),
    ),
    poisson_case("poisson_nll_rate", rate_inputs, log_input=False),
    Case(
        "triplet_margin",
        triplet_inputs,
        lambda x, p: F.triplet_margin_loss(
            x["anchor"],
            x["positive"],
            x["negative"],
            margin=p["margin"],
            p=p["p"],
            eps=p["eps"],
            swap=p["swap"] == "on",
            reduction=p["reduction"],
        ),
        grad=("anchor", "positive", "negative"),
        defaults={"margin": 1.0, "p": 2.0, "eps": 1e-6, "swap": "off", "reduction": "mean"},
        overrides=(
            ("margin", 0.3),
            ("p", 1.0),
            ("p", 3.0),
            ("eps", 0.0),
            ("swap", "on"),
            ("reduction", "sum"),
        ),
    ),
    Case(
        "cosine_embedding",
        cosine_pair_inputs,
        lambda x, p: F.cosine_embedding_loss(
            x["input1"], x["input2"], x["target"], margin=p["margin"], reduction=p["reduction"]
        ),
        grad=("input1", "input2"),
        defaults={"margin": 0.0, "reduction": "mean"},
        overrides=(("margin", 0.4), ("margin", -0.5), ("reduction", "sum")),
    ),
    Case(
        "multi_margin",
        multi_class_inputs,
        lambda x, p: F.multi_margin_loss(
            x["input"], x["target"], p=int(p["p"]), margin=p["margin"], reduction=p["reduction"]
        ),
        defaults={"p": 1, "margin": 1.0, "reduction": "mean"},
        overrides=(("p", 2), ("margin", 0.3), ("reduction", "sum")),
    ),
    Case(
        "multi_margin",
        weighted_multi_class_inputs,
        lambda x, p: F.multi_margin_loss(
            x["input"],
            x["target"],
            p=int(p["p"]),
            margin=p["margin"],
            weight=x["weight"],
            reduction=p["reduction"],
        ),
        defaults={"p": 1, "margin": 1.0, "reduction": "mean"},
        overrides=(("p", 2), ("reduction", "sum")),
        id="multi_margin-weighted",
    ),
    Case(
        "multilabel_soft_margin",
        multi_label_inputs,
        lambda x, p: F.multilabel_soft_margin_loss(
            x["input"], x["target"], reduction=p["reduction"]
        ),
        defaults={"reduction": "mean"},
        overrides=(("reduction", "sum"),),
    ),
    Case(
        "multilabel_soft_margin",
        weighted_multi_label_inputs,
        lambda x, p: F.multilabel_soft_margin_loss(
            x["input"], x["target"], weight=x["weight"], reduction=p["reduction"]
        ),
        defaults={"reduction": "mean"},
        overrides=(("reduction", "sum"),),
        id="multilabel_soft_margin-weighted",
    ),
    Case(
        "multilabel_margin",
        label_list_inputs,
        lambda x, p: F.multilabel_margin_loss(x["input"], x["target"], reduction=p["reduction"]),
        defaults={"reduction": "mean"},
        overrides=(("reduction", "sum"),),
    ),
]

CLASSIC = sorted({case.spec for case in CASES})
OVERRIDES = [
    pytest.param(case, name, value, id=f"{case}-{name}={value}")
    for case in CASES
    for name, value in case.overrides
]


def run_both(case: Case, loss_fn, params: Params, call_params: Params | None = None, seed: int = 0):
    """The loss and grads from lossdsl and from the reference, on the same fresh inputs."""
    inputs = case.inputs(_gen(seed), params)
    ours = {k: v.clone().requires_grad_(k in case.grad) for k, v in inputs.items()}
    theirs = {k: v.clone().requires_grad_(k in case.grad) for k, v in inputs.items()}
    out = loss_fn(**ours) if call_params is None else loss_fn(**ours, params=call_params)
    expected = case.reference(theirs, params)
    got_grads = torch.autograd.grad(out.loss, [ours[k] for k in case.grad])
    want_grads = torch.autograd.grad(expected, [theirs[k] for k in case.grad])
    got = dict(zip(case.grad, got_grads, strict=True))
    want = dict(zip(case.grad, want_grads, strict=True))
    return out, expected, got, want


def assert_matches_reference(
    case: Case, loss_fn, params: Params, call_params: Params | None = None
) -> None:
    out, expected, got_grads, want_grads = run_both(case, loss_fn, params, call_params)
    assert out.loss.shape == ()
    assert_close_relative(out.loss, expected.detach(), f"{case} loss")
    for name in case.grad:
        assert_close_relative(got_grads[name], want_grads[name], f"{case} d loss / d {name}")
    assert torch.equal(out.terms[case.spec], out.loss.detach()), (
        "the one term is named after the spec"
    )


# ---- the library as a whole ------------------------------------------------------------------


def test_standard_spec_stems_are_unique_across_specs():
    stems = [path.stem for path in SPECS.rglob("*.loss")]
    duplicates = sorted({stem for stem in stems if stems.count(stem) > 1})
    assert not duplicates, f"two standard specs share a name: {duplicates}"


def test_every_classic_loss_is_in_the_standard_library():
    assert set(CLASSIC) <= {path.stem for path in SPECS.glob("*.loss")}
    assert {"multi_objective", "curriculum"} <= {
        path.stem for path in (SPECS / "examples").glob("*.loss")
    }


@pytest.mark.parametrize("name", sorted(path.stem for path in SPECS.rglob("*.loss")))
def test_every_standard_name_loads(name):
    loss_fn = lossdsl.load(name)
    assert isinstance(loss_fn, torch.nn.Module)


@pytest.mark.parametrize("name", CLASSIC)
def test_classic_spec_checks_without_errors_or_stability_hazards(name):
    hazards = {"W300", "W301", "W303"}
    found = [
        d
        for d in lossdsl.check(SPECS / f"{name}.loss")
        if d.severity == "error" or d.code in hazards
    ]
    assert not found, "\n".join(d.render() for d in found)


# ---- value and gradient against torch ------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_equals_torch_with_default_params(case):
    assert_matches_reference(case, lossdsl.load(case.spec), case.defaults)


@pytest.mark.parametrize(("case", "name", "value"), OVERRIDES)
def test_equals_torch_with_param_set_at_load(case, name, value):
    loss_fn = lossdsl.load(case.spec, params={name: value})
    assert_matches_reference(case, loss_fn, {**case.defaults, name: value})


NUMERIC_OVERRIDES = [p for p in OVERRIDES if not isinstance(p.values[2], str)]
CHOICE_OVERRIDES = [p for p in OVERRIDES if isinstance(p.values[2], str)]


@pytest.mark.parametrize(("case", "name", "value"), NUMERIC_OVERRIDES)
def test_equals_torch_with_param_overridden_for_one_call(case, name, value):
    loss_fn = lossdsl.load(case.spec)
    assert_matches_reference(
        case, loss_fn, {**case.defaults, name: value}, call_params={name: value}
    )
    assert_matches_reference(case, loss_fn, case.defaults)  # the next call is back to the default


@pytest.mark.parametrize(("case", "name", "value"), CHOICE_OVERRIDES)
def test_static_choice_changes_with_set_params_not_for_one_call(case, name, value):
    """A static choice is fixed when the module is built (LANGUAGE.md): `set_params`
    rebuilds it; a one-call override would be a silent rebuild, so it is an InputError."""
    loss_fn = lossdsl.load(case.spec)
    x = case.inputs(_gen(0), case.defaults)
    with pytest.raises(lossdsl.InputError, match="static choice"):
        loss_fn(**x, params={name: value})
    loss_fn.set_params(**{name: value})
    assert_matches_reference(case, loss_fn, {**case.defaults, name: value})


# ---- where lossdsl and torch differ on purpose ----------------------------------------------


def test_cross_entropy_of_an_all_ignored_batch_is_zero_where_torch_gives_nan():
    """torch divides by the number of non-ignored targets, 0 here; a masked mean over
    nothing is 0 in lossdsl (LANGUAGE.md), so a fully padded batch does not poison training."""
    input = _randn(_gen(1), 2, 3, 5).requires_grad_()
    target = torch.full((2, 3), -100)
    out = lossdsl.load("cross_entropy")(input=input, target=target)
    assert out.loss.item() == 0.0
    (grad,) = torch.autograd.grad(out.loss, input)
    assert torch.equal(grad, torch.zeros_like(input))
    assert F.cross_entropy(classes_first(input), target.reshape(-1)).isnan()


def test_cross_entropy_with_label_smoothing_of_an_all_ignored_batch_is_zero_where_torch_gives_nan():
    input = _randn(_gen(2), 4, 5)
    target = torch.full((4,), 7)
    out = lossdsl.load("cross_entropy")(
        input=input, target=target, params={"ignore_index": 7, "label_smoothing": 0.1}
    )
    assert out.loss.item() == 0.0
    assert F.cross_entropy(input, target, ignore_index=7, label_smoothing=0.1).isnan()


EXTREME_LOGITS = [[3e38, -3e38, 0.0], [1.0, 2.0, -math.inf], [0.5, -math.inf, -math.inf]]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("logits, target", [(row, t) for row in EXTREME_LOGITS for t in (0, 1)])
@pytest.mark.parametrize("compiled", [False, True])
def test_cross_entropy_at_float32_extremes_and_masked_classes_equals_torch(
    logits, target, smoothing, compiled
):
    """A class whose log-probability is -inf (a logit of -inf, or one 6e38 below the top)
    made `label_smoothing * mean(log p)` NaN at label_smoothing = 0: 0·(-inf)."""
    from tests.support import CountingBackend

    load = {"compile": True, "backend": CountingBackend()} if compiled else {}
    loss_fn = lossdsl.load("cross_entropy", params={"label_smoothing": smoothing}, **load)
    x = torch.tensor([logits], requires_grad=True)
    t = torch.tensor([target])
    out = loss_fn(input=x, target=t)
    expected = F.cross_entropy(x.detach(), t, label_smoothing=smoothing)
    exact = F.cross_entropy(x.detach().double(), t, label_smoothing=smoothing).float()
    # torch's value, or (compiled, mean(x) - logsumexp) the exact one where torch's float32
    # log-probabilities overflow: -3e38 - 3e38 is -inf in float32, not in float64.
    assert any(
        out.loss.item() == value.item() or math.isclose(out.loss.item(), value.item(), rel_tol=1e-6)
        for value in (expected, exact)
    )
    if math.isfinite(expected.item()):
        out.loss.backward()
        reference = x.detach().clone().requires_grad_(True)
        F.cross_entropy(reference, t, label_smoothing=smoothing).backward()
        torch.testing.assert_close(x.grad, reference.grad)


def test_sft_nll_over_a_masked_vocabulary_equals_torch():
    logits = torch.tensor([[[1.0, 2.0, -math.inf, 0.5], [-math.inf, 0.0, 3.0, -math.inf]]])
    labels = torch.tensor([[1, -100]])
    out = lossdsl.load("sft_nll")(logits=logits, labels=labels)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)


def test_nll_of_an_all_ignored_batch_is_zero_where_torch_gives_nan():
    input = F.log_softmax(_randn(_gen(3), 4, 5), dim=-1)
    target = torch.full((4,), -100)
    assert lossdsl.load("nll")(input=input, target=target).loss.item() == 0.0
    assert F.nll_loss(input, target).isnan()


def test_soft_margin_stays_finite_where_torch_overflows():
    """torch computes log1p(exp(-y x)), which is inf once -y x > ~709 in float64;
    the spec's exact softplus gives -y x there."""
    input = torch.tensor([-1e4, 2.0], dtype=torch.float64)
    target = torch.tensor([1.0, 1.0], dtype=torch.float64)
    out = lossdsl.load("soft_margin")(input=input, target=target)
    assert_close_relative(
        out.loss,
        (1e4 + math.log1p(math.exp(-2.0))) / 2 * torch.ones((), dtype=torch.float64),
        "soft_margin at -1e4",
    )
    assert F.soft_margin_loss(input, target).isinf()


def test_bce_at_probabilities_0_and_1_equals_torch_in_value_with_a_finite_gradient():
    """Both clamp each log at -100. torch's backward there is (x - t) / max(x (1 - x), 1e-12),
    not the derivative of its forward; lossdsl's gradient is the derivative of the clamped
    formula."""
    input = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.3], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5], dtype=torch.float64)
    out = lossdsl.load("bce")(input=input, target=target)
    assert_close_relative(
        out.loss, F.binary_cross_entropy(input, target).detach(), "bce at 0 and 1"
    )
    (grad,) = torch.autograd.grad(out.loss, input)
    assert grad.isfinite().all()


def test_gaussian_nll_var_gradient_passes_straight_through_the_eps_clamp_like_torch():
    """torch clamps `var` under no_grad, so a variance below eps still gets the gradient of
    the clamped value; a plain clamp would stop it."""
    input = torch.zeros(2, dtype=torch.float64)
    target = torch.tensor([0.0, 1e-4], dtype=torch.float64)
    var = torch.tensor([1e-9, 1e-9], dtype=torch.float64, requires_grad=True)
    out = lossdsl.load("gaussian_nll")(input=input, target=target, var=var)
    (grad,) = torch.autograd.grad(out.loss, var)
    eps = 1e-6
    expected = 0.5 * (1 / eps - target**2 / eps**2) / 2
    assert_close_relative(grad, expected, "straight-through var gradient")
    assert (grad != 0).all()


def test_poisson_nll_ignores_eps_with_a_log_input_like_torch():
    inputs = count_inputs(_gen(4), {})
    loss_fn = lossdsl.load("poisson_nll")
    assert torch.equal(loss_fn(**inputs).loss, loss_fn(**inputs, params={"eps": 0.5}).loss)
    assert torch.equal(F.poisson_nll_loss(**inputs), F.poisson_nll_loss(**inputs, eps=0.5))


def test_smooth_l1_with_beta_zero_is_l1():
    inputs = regression_inputs(_gen(5), {})
    smooth = lossdsl.load("smooth_l1", params={"beta": 0.0})(**inputs).loss
    assert_close_relative(smooth, lossdsl.load("l1")(**inputs).loss, "smooth_l1 at beta=0")


def test_every_classic_def_can_be_used_in_one_spec(tmp_path):
    """`use` brings each spec's defs; two defs of one name would be E102, so the names
    are unique."""
    spec = tmp_path / "all_classic.loss"
    uses = "\n".join(f"use {name}" for name in CLASSIC)
    spec.write_text(
        f"loss all_classic\n{uses}\ninput x : float[N] grad\ninput y : float[N]\n"
        "term fit = mean(huber_loss(x, y, 1) + cauchy_loss(x, y, 2))\n"
    )
    errors = [d for d in lossdsl.check(spec) if d.severity == "error"]
    assert not errors, "\n".join(d.render() for d in errors)


# ---- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(("start", "admitted"), [(0.2, 1), (0.5, 3), (1.0, 5)])
def test_curriculum_counts_only_samples_no_harder_than_its_level(start, admitted):
    """specs/examples/curriculum.loss: on the first call the level is `start` (how it rises
    is in tests/test_adaptive_specs.py)."""
    gen = _gen(6)
    logits, labels = _randn(gen, 5, 3), torch.tensor([0, 1, 2, 1, 0])
    difficulty = torch.tensor([0.1, 0.3, 0.5, 0.8, 1.0], dtype=torch.float64)  # sorted: easy first
    loss_fn = lossdsl.load("curriculum", params={"start": start})
    out = loss_fn(logits=logits, labels=labels, difficulty=difficulty)
    expected = F.cross_entropy(logits[:admitted], labels[:admitted])
    assert_close_relative(out.loss, expected, f"curriculum from level {start}")
    assert out.metrics["admitted_fraction"].item() == pytest.approx(admitted / 5)


@pytest.mark.parametrize(
    ("step", "value_weight"), [(0, 0.0), (500, 0.25), (1_000, 0.5), (9_000, 0.5)]
)
def test_multi_objective_weights_its_terms_and_warms_up_the_regression(step, value_weight):
    """specs/examples/multi_objective.loss:
    classification + 0.5 warmup(1000) regression - 0.01 entropy."""
    gen = _gen(7)
    logits, labels = _randn(gen, 4, 3).requires_grad_(), torch.tensor([0, 1, 2, 1])
    values, returns = _randn(gen, 4).requires_grad_(), 3 * _randn(gen, 4)
    out = lossdsl.load("multi_objective")(
        logits=logits, labels=labels, values=values, returns=returns, step=step
    )
    classification = F.cross_entropy(logits, labels, label_smoothing=0.1)
    regression = F.huber_loss(values, returns)
    entropy = -(F.softmax(logits, -1) * F.log_softmax(logits, -1)).sum(-1).mean()
    assert_close_relative(out.terms["classification"], classification.detach(), "classification")
    assert_close_relative(out.terms["regression"], regression.detach(), "regression")
    assert_close_relative(out.terms["entropy"], entropy.detach(), "entropy")
    assert out.weights["regression"].item() == pytest.approx(value_weight)
    expected = classification + value_weight * regression - 0.01 * entropy
    assert_close_relative(out.loss, expected.detach(), f"total at step {step}")
    got = torch.autograd.grad(out.loss, [logits, values])
    want = torch.autograd.grad(expected, [logits, values])
    for name, g, w in zip(("logits", "values"), got, want, strict=True):
        assert_close_relative(g, w, f"d total / d {name}")
