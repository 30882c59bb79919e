"""The recipes of docs/integrations.md run as they are printed, and do what they say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "integrations.md"


def recipe(section: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    (block,) = re.findall(r"^```python\n(.*?)^```", text[start:end], re.S | re.M)
    return block


def run(section: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(tmp_path)  # the recipes write their output_dir "out" here
    namespace: dict = {"__name__": "recipe"}
    exec(compile(recipe(section), str(DOC), "exec"), namespace)
    return namespace


def test_the_transformers_recipe_logs_the_keys_it_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = run("Hugging Face `transformers.Trainer`", tmp_path, monkeypatch)
    shown = re.search(r"# (\['epoch'.*?\])", recipe("Hugging Face `transformers.Trainer`"), re.S)
    assert shown is not None
    assert sorted(namespace["last"]) == eval(shown.group(1).replace("#", ""))
    logs = [e for e in namespace["trainer"].state.log_history if "loss" in e]
    assert logs[-1]["loss"] < logs[0]["loss"]


def test_the_trl_recipe_trains(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    logs = run("TRL's `SFTTrainer`", tmp_path, monkeypatch)["logs"]
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    assert logs[-1]["metrics/accuracy"] > 0.9


def test_the_lightning_recipe_logs_the_spec_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged = run("PyTorch Lightning", tmp_path, monkeypatch)["trainer"].logged_metrics
    assert {"val/loss", "val/terms/cross_entropy", "val/weights/cross_entropy"} <= set(logged)
    assert {"train/terms/cross_entropy_step", "train/terms/cross_entropy_epoch"} <= set(logged)
