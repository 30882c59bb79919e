"""The standard specs on the device `--device` names (default: the CPU), in float32, against
the same spec in float64 on the CPU: eager, compiled and sliced (a linear head included).

    pytest tests/test_device.py --device cuda     # what a GPU machine runs first

On the CPU this checks float32 against float64; on a GPU it is the check that lossdsl's
graphs, its sliced executor and its runtime checks work there at all.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import lossdsl
from tests.backend.test_sliced_execution import random_inputs

SPECS = [
    ("cross_entropy", {"label_smoothing": 0.1, "z_loss": 1e-4}),
    ("sft_nll", {}),
    ("ppo", {}),
    ("grpo", {}),
    ("dpo", {}),
    ("distill_kl", {}),
    ("huber", {}),
]
# The variants each spec runs as on the device: keyword arguments of `lossdsl.load`.
WAYS = {
    "eager": {},
    "compiled": {"compile": True},
    "sliced": {"chunk": 4},
}


def compile_backend(device: str) -> str:
    """Inductor where it generates device code (a GPU); on the CPU Inductor's own tests live
    elsewhere and cost 10-30 s a graph, so the graph runs through aot_eager."""
    return "aot_eager" if device == "cpu" else "inductor"


def on(device: str, inputs: dict) -> dict:
    return {
        name: (t.detach().float() if t.is_floating_point() else t)
        .to(device)
        .requires_grad_(t.requires_grad)
        for name, t in inputs.items()
    }


def run(module, inputs: dict) -> tuple[torch.Tensor, dict]:
    out = module(**inputs)
    out.loss.backward()
    grads = {name: t.grad for name, t in inputs.items() if t.requires_grad}
    return out.loss.detach(), grads


# On the CPU the compiled standard specs are tested throughout the suite, each compilation
# costing seconds: here two quick ones stand for them. Any other device runs them all.
COMPILED_ON_THE_CPU = {"dpo", "huber"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "way" not in metafunc.fixturenames:
        return
    on_cpu = metafunc.config.getoption("--device") == "cpu"
    calls = [
        (name, params, way)
        for name, params in SPECS
        for way in WAYS
        if not (name == "huber" and way == "sliced")  # nothing to slice: E205
        and not (on_cpu and way == "compiled" and name not in COMPILED_ON_THE_CPU)
    ]
    metafunc.parametrize(
        "name, params, way", calls, ids=[f"{name}-{way}" for name, _, way in calls]
    )


def test_standard_spec_on_the_device_matches_float64_on_the_cpu(
    device: str, name: str, params: dict, way: str
) -> None:
    options = dict(WAYS[way])
    if options.get("compile"):
        options["backend"] = compile_backend(device)
    reference = lossdsl.load(name, params=params)
    inputs = random_inputs(reference)
    expected_loss, expected_grads = run(reference, inputs)
    module = lossdsl.load(name, params=params, **options).to(device)
    loss, grads = run(module, on(device, inputs))
    assert loss.device.type == torch.device(device).type
    torch.testing.assert_close(loss.cpu().double(), expected_loss, rtol=1e-4, atol=1e-5)
    for input_name, grad in expected_grads.items():
        got = grads[input_name]
        assert got is not None and got.device.type == torch.device(device).type, input_name
        torch.testing.assert_close(got.cpu().double(), grad, rtol=1e-4, atol=1e-5)


def test_a_linear_head_sliced_on_the_device_matches_the_full_logits(device: str) -> None:
    """hidden [N, H] and head [V, H] in; no [N, V] tensor made; F.cross_entropy of the full
    logits on the same device is the reference."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 16, generator=g).to(device).requires_grad_()
    head = torch.randn(50, 16, generator=g).to(device).requires_grad_()
    target = torch.randint(0, 50, (37,), generator=g).to(device)
    target[::5] = -100
    module = lossdsl.load("cross_entropy", chunk=8).to(device)
    loss = module(hidden=hidden, head=head, target=target).loss
    loss.backward()
    h2, w2 = hidden.detach().clone().requires_grad_(), head.detach().clone().requires_grad_()
    expected = torch.nn.functional.cross_entropy(h2 @ w2.T, target, ignore_index=-100)
    expected.backward()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hidden.grad, h2.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(head.grad, w2.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
def test_a_bf16_linear_head_sliced_on_the_device_sums_its_gradient_in_float32(
    device: str, compiled: bool
) -> None:
    """bf16 hidden states and head, five slices: the head's gradient is summed over the
    slices in float32 (on CUDA by addmm writing float32 from bf16 operands), so it matches
    float64 arithmetic on the same bf16 values to bf16's own precision."""
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(37, 64, generator=g).bfloat16()
    head = (torch.randn(300, 64, generator=g) * 0.125).bfloat16()
    target = torch.randint(0, 300, (37,), generator=g)
    target[::5] = -100
    options = {"compile": True, "backend": compile_backend(device)} if compiled else {}
    module = lossdsl.load("cross_entropy", chunk=8, **options).to(device)
    x, w = (t.to(device).requires_grad_() for t in (hidden, head))
    loss = module(hidden=x, head=w, target=target.to(device)).loss
    loss.backward()
    x64, w64 = (t.detach().double().requires_grad_() for t in (hidden, head))
    expected = torch.nn.functional.cross_entropy(x64 @ w64.T, target, ignore_index=-100)
    expected.backward()
    assert x.grad.dtype == w.grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.cpu().double(), expected, rtol=2e-2, atol=1e-2)
    for got, want in ((x.grad, x64.grad), (w.grad, w64.grad)):
        scale = want.abs().max().item()
        torch.testing.assert_close(got.cpu().double(), want, rtol=2e-2, atol=1e-2 * scale)


OUT_OF_RANGE = """
import torch, lossdsl
module = lossdsl.load("cross_entropy").to("{device}")
logits = torch.randn(4, 5, device="{device}")
module(input=logits, target=torch.tensor([0, 1, 7, 2], device="{device}")).loss.item()
"""


def test_a_class_index_out_of_range_on_the_device_names_the_input(device: str) -> None:
    """On the CPU an InputError. On a GPU the check is a device-side assertion (raising
    it in Python would cost a synchronisation every call): it names the input, and leaves
    the process's CUDA context unusable, so it runs in a process of its own."""
    if device == "cpu":
        module = lossdsl.load("cross_entropy")
        with pytest.raises(lossdsl.InputError, match=r"`target` .*class index outside"):
            module(input=torch.randn(4, 5), target=torch.tensor([0, 1, 7, 2]))
        return
    script = OUT_OF_RANGE.format(device=device)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode != 0
    assert "`target` leads to a class index outside [0, C)" in done.stderr
