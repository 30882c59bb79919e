"""Class indices out of range are InputErrors naming the input and the range, checked by an
assert on the device (no host sync when they are in range), eager and compiled."""

from __future__ import annotations

import pytest
import torch

import lossdsl
from tests.support import CountingBackend, spec_inputs


def ppo_with_action(action: int, **load) -> tuple:
    loss_fn = lossdsl.load("ppo", **load)
    x = spec_inputs(loss_fn, {"B": 2, "T": 3, "V": 5})
    x["actions"][1, 2] = action
    return loss_fn, x


@pytest.mark.parametrize("action", [5, -1])
@pytest.mark.parametrize("compiled", [False, True])
def test_an_action_outside_its_declared_range_names_the_input_range_and_value(action, compiled):
    load = {"compile": True, "backend": CountingBackend()} if compiled else {}
    loss_fn, x = ppo_with_action(action, **load)
    with pytest.raises(lossdsl.InputError) as error:
        loss_fn(**x)
    assert str(error.value) == (
        "input `actions` (declared in [0, V)) has a class index outside [0, V) "
        f"with V=5 (bound by `logits`); found {action}"
    )


@pytest.mark.parametrize("target", [3, -5])
def test_cross_entropy_targets_outside_the_classes_are_input_errors(target):
    loss_fn = lossdsl.load("cross_entropy")
    targets = torch.tensor([0, 2, target])
    with pytest.raises(lossdsl.InputError) as error:
        loss_fn(input=torch.randn(3, 3), target=targets)
    assert str(error.value) == (
        "input `target` leads to a class index outside [0, C) with C=3 (bound by `input`)"
    )


def test_cross_entropy_ignored_targets_are_not_class_indices():
    loss_fn = lossdsl.load("cross_entropy")
    logits = torch.randn(3, 3)
    out = loss_fn(input=logits, target=torch.tensor([0, -100, 2]))
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, -100, 2]))
    torch.testing.assert_close(out.loss, expected)


def test_one_hot_indices_are_checked_the_same_way(write_spec):
    loss_fn = lossdsl.load(
        write_spec("""
        loss brier
        input probs  : float[N, C] grad in [0, 1]
        input labels : int[N]
        term t = mean(sum(square(probs - one_hot(labels, C)), dim=C))
    """)
    )
    with pytest.raises(lossdsl.InputError, match=r"input `labels` has a class index outside"):
        loss_fn(probs=torch.rand(2, 4), labels=torch.tensor([1, 4]))


def test_the_check_is_an_assert_in_the_graph_not_a_host_read():
    loss_fn = lossdsl.load("ppo")
    assert "torch._assert_async(" in loss_fn.code
    assert ".item()" not in loss_fn.code and "tolist" not in loss_fn.code
