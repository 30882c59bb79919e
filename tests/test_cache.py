"""The IR cache: a second process loading the same spec skips parsing and checking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lossdsl
from lossdsl import cache

PROGRAM = """
import sys, time, torch
start = time.perf_counter()
import lossdsl
loss_fn = lossdsl.load({spec!r})
elapsed = time.perf_counter() - start
out = loss_fn(input=torch.tensor([1.0, 2.0]), target=torch.tensor([0.0, 0.0]))
print(out.loss.item(), "lark" in sys.modules, "lossdsl.ir.builder" in sys.modules)
"""


def load_in_fresh_process(spec: Path, cache_dir: Path) -> list[str]:
    env = {**os.environ, "LOSSDSL_CACHE_DIR": str(cache_dir), "LOSSDSL_CACHE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(spec=str(spec))],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return result.stdout.split()


def test_second_process_skips_parse_and_check(write_spec, tmp_path: Path):
    spec = write_spec(
        "loss cached\ninput input : float[N] grad\ninput target : float[N]\n"
        "term t = mean(square(input - target))\n"
    )
    first = load_in_fresh_process(spec, tmp_path / "cache")
    second = load_in_fresh_process(spec, tmp_path / "cache")
    assert first == ["2.5", "True", "True"]  # parsed (lark) and built the IR
    assert second == ["2.5", "False", "False"]  # neither: the IR came from the cache


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOSSDSL_CACHE", "1")
    return tmp_path / "cache"


def test_editing_a_used_spec_invalidates_the_entry(write_spec, isolated_cache: Path):
    write_spec("loss helpers\ndef scaled(x) = 2 * x\n", "helpers.loss")
    spec = write_spec(
        'loss user\nuse "helpers.loss"\ninput x : float[N] grad\nterm t = mean(scaled(x))\n'
    )
    x = torch.ones(3)
    assert lossdsl.load(spec)(x=x).loss.item() == 2.0
    write_spec("loss helpers\ndef scaled(x) = 3 * x\n", "helpers.loss")
    assert lossdsl.load(spec)(x=x).loss.item() == 3.0


def test_comments_do_not_change_the_key(write_spec):
    a = write_spec("loss k\ninput x : float[N] grad\nterm t = mean(x)  # the mean\n", "a.loss")
    b = write_spec("loss k\n# a comment\ninput x : float[N] grad\nterm t = mean(x)\n", "b.loss")
    assert cache.cache_key(a, {}, "inductor", None) == cache.cache_key(b, {}, "inductor", None)
    assert cache.cache_key(a, {}, "inductor", None) != cache.cache_key(a, {}, "eager", None)


def test_cache_can_be_turned_off(write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOSSDSL_CACHE", "0")
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "off"))
    lossdsl.load(write_spec("loss off\ninput x : float[N] grad\nterm t = mean(x)\n"))
    assert not (tmp_path / "off").exists()
