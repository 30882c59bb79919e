"""Helpers shared by tests: a counting torch.compile backend, inputs for any spec."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

from lossdsl.backend.compiled import compiles_once_across_sizes

# On torch before 2.13 compile=True compiles static shapes (docs/performance.md, "One
# compilation per spec"): the tests that count one compilation across sizes do not apply.
needs_one_compilation_across_sizes = pytest.mark.skipif(
    not compiles_once_across_sizes(),
    reason="torch before 2.13 compiles static shapes, one compilation per shape",
)


class CountingBackend:
    """A torch.compile backend that runs the captured graph as is and counts captures."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph_module: torch.fx.GraphModule, example_inputs: list) -> object:
        self.compilations += 1
        return graph_module.forward


def spec_inputs(loss_fn, sizes: dict, seed: int = 0) -> dict:
    """Inputs for any spec from its declared dims (`sizes["..."]` is the leading shape);
    class indices fall in [0, V) or [0, C), floats are valid log-probabilities."""
    generator = torch.Generator().manual_seed(seed)
    classes = max(sizes.get("V", sizes.get("C", 2)), 1)
    values = {}
    for spec in loss_fn.SPEC["inputs"]:
        shape = []
        for dim in spec["dims"]:
            shape += sizes["..."] if dim == "..." else [sizes.get(dim, dim)]
        if spec["dtype"] == "int":
            tensor = torch.randint(0, classes, shape, generator=generator)
        elif spec["dtype"] == "bool":
            tensor = torch.rand(shape, generator=generator) > 0.3
        else:
            tensor = -torch.rand(shape, generator=generator) - 0.1
        values[spec["name"]] = tensor.requires_grad_(spec["grad"])
    return values


MAX_CHOICE_COMBINATIONS = 64


def static_choice_sets(choices: list[Any]) -> list[tuple[tuple[str, str], ...]]:
    """The static-choice settings a test of every variant of a spec tries: every combination,
    or, where there are more than MAX_CHOICE_COMBINATIONS (dpo_variants has 25 200), the
    defaults and each choice set to each of its values alone (the spec's own tests cross
    the options that interact)."""
    options = [[(c.name, v) for v in c.choices] for c in choices]
    if math.prod(len(o) for o in options) <= MAX_CHOICE_COMBINATIONS:
        return [tuple(combo) for combo in itertools.product(*options)]
    defaults = tuple((c.name, c.value) for c in choices)
    sets = [defaults]
    for position, choice in enumerate(choices):
        for value in choice.choices:
            if value != choice.value:
                changed = list(defaults)
                changed[position] = (choice.name, value)
                sets.append(tuple(changed))
    return sets
