"""E206 (passes/collectives.py): `global_sum` takes normalisers, never a value autograd
differentiates, and never another `global_sum`."""

from __future__ import annotations

import pytest

from lossdsl.passes.pipeline import check_text

HEADER = """
loss normaliser
input x    : float[B, T] grad
input mask : bool[B, T]
"""


def codes(term: str) -> list[str]:
    checked = check_text(HEADER + f"term t = {term}\n", "normaliser.loss")
    return [d.code for d in checked.diagnostics if d.code.startswith("E")]


@pytest.mark.parametrize(
    "normaliser",
    [
        "global_sum(count(mask))",
        "global_sum(count(x > 0))",  # a count of a comparison of a grad input: no gradient
        "global_sum(count(x > 0, where=mask))",
        "global_sum(detach(sum(x, where=mask)))",
        "world_size * global_sum(count(count(mask, dim=T) > 0))",  # non-empty sequences
    ],
)
def test_counts_and_detached_values_are_normalisers(normaliser: str) -> None:
    assert codes(f"sum(square(x), where=mask) / max({normaliser}, 1)") == []


@pytest.mark.parametrize(
    "normaliser",
    [
        "global_sum(sum(square(x), where=mask))",
        "global_sum(sum(where(x > 0, x, 0)))",  # the comparison selects, x still flows
        "global_sum(count(mask) + sum(x))",
    ],
)
def test_a_value_with_gradient_in_global_sum_is_e206(normaliser: str) -> None:
    assert codes(f"sum(square(x), where=mask) / max({normaliser}, 1)") == ["E206"]


def test_a_global_sum_inside_another_is_e206() -> None:
    assert codes("sum(x) / max(global_sum(global_sum(count(mask))), 1)") == ["E206"]
