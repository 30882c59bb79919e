"""The comparison table of docs/stdlib.md (scripts/framework_losses.py): every loss of
torch.nn.functional, TRL's DPO loss types and verl's `core_algos` has a row, and every spec
and param a row names loads as written."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import torch.nn.functional as F

import lossdsl

ROOT = Path(__file__).resolve().parent.parent


def _table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "framework_losses", ROOT / "scripts" / "framework_losses.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLE = _table()
ALL_ROWS = [row for _, rows, _ in TABLE.SECTIONS for row in rows]

# verl's registered policy losses, KL estimators and aggregation modes (core_algos.py, the
# 0.9 line: register_policy_loss, kl_penalty_forward and its "+" variants, agg_loss)
VERL_NAMES = [
    "vanilla", "gspo", "sapo", "gpg", "clip_cov", "kl_cov", "geo_mean", "cispo", "bypass_mode",
    "dppo_tv", "dppo_kl", '"k1"', '"k2"', '"k3"', '"abs"', '"k1+"', '"k3+"', '"full"',
    "token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm",
    "compute_value_loss", "compute_entropy_loss", "compute_policy_loss_reinforce",
    "rollout correction",
]  # fmt: skip


def parse_params(text: str) -> dict[str, object]:
    """`a=1.0, b="x"` as a dict: quoted values are static choices, the rest numbers."""
    params: dict[str, object] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, value = (side.strip() for side in item.split("=", 1))
        params[name] = value.strip('"') if value.startswith('"') else float(value)
    return params


def test_every_torch_functional_loss_has_a_row():
    named = {
        n
        for n in dir(F)
        if not n.startswith("_")
        and (n.endswith("_loss") or n in {"cross_entropy", "kl_div", "binary_cross_entropy"})
    }
    named |= {"binary_cross_entropy_with_logits"}
    covered = {row.loss.split(" ")[0] for row in TABLE.TORCH}
    assert named <= covered, f"torch losses without a row: {sorted(named - covered)}"


def test_every_trl_dpo_loss_type_has_a_row():
    trl = pytest.importorskip("trl")
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(trl.DPOConfig)}
    types = set(re.findall(r"`'(\w+)'`", fields["loss_type"].metadata["help"]))
    assert len(types) >= 15, types
    covered = {row.loss.strip('"') for row in TABLE.TRL}
    assert types <= covered, f"TRL loss types without a row: {sorted(types - covered)}"


@pytest.mark.parametrize("name", VERL_NAMES)
def test_every_verl_loss_has_a_row(name):
    assert any(name in row.loss for row in TABLE.VERL), name


def test_a_row_without_a_spec_says_why():
    for row in ALL_ROWS:
        assert row.spec or row.note.startswith("none"), row


@pytest.mark.parametrize(
    "row", [row for row in ALL_ROWS if row.spec], ids=lambda row: f"{row.spec}:{row.loss}"
)
def test_each_named_spec_loads_with_its_params(row):
    params = parse_params(row.params)
    loss_fn = lossdsl.load(row.spec, params=params)  # an unknown name is an InputError
    for name, value in params.items():
        assert current_value(loss_fn, name) == value, f"{row.spec}: {name} is not {value}"


def current_value(loss_fn, name: str) -> object:
    if name in loss_fn.SPEC["choices"]:
        return loss_fn.SPEC["choices"][name]["value"]
    names = [p["name"] for p in loss_fn.SPEC["params"]]
    return loss_fn.param_values[names.index(name)].item()
