"""The IR cache: a second process loading the same spec skips parsing and checking, and an
entry is served only for exactly the files it was built from."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lossdsl
from lossdsl import cache
from lossdsl.spec_files import Reference, read_spec_file

PROGRAM = """
import sys, time, torch
start = time.perf_counter()
import lossdsl
loss_fn = lossdsl.load({spec!r})
elapsed = time.perf_counter() - start
out = loss_fn(input=torch.tensor([1.0, 2.0]), target=torch.tensor([0.0, 0.0]))
print(out.loss.item(), "lark" in sys.modules, "lossdsl.ir.builder" in sys.modules)
"""


def load_in_fresh_process(spec: Path | str, cache_dir: Path, timeout: float = 120) -> list[str]:
    env = {**os.environ, "LOSSDSL_CACHE_DIR": str(cache_dir), "LOSSDSL_CACHE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(spec=str(spec))],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=timeout,
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


def test_a_spec_with_uses_is_served_without_parsing(tmp_path: Path, monkeypatch):
    """The files a spec `use`s are checked from the entry's record, not by parsing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "helpers.loss").write_text("loss helpers\ndef sq(x) = x * x\n")
    (tmp_path / "user.loss").write_text(
        'loss user\nuse "helpers.loss"\nuse huber\ninput input : float[N] grad\n'
        "input target : float[N]\nterm t = mean(sq(input - target))\n"
    )
    first = load_in_fresh_process("user.loss", tmp_path / "cache")
    second = load_in_fresh_process("user.loss", tmp_path / "cache")
    assert first == ["2.5", "True", "True"]
    assert second == ["2.5", "False", "False"]


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("LOSSDSL_CACHE", "1")
    return tmp_path / "cache"


def entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json"))


def test_editing_a_used_spec_invalidates_the_entry(write_spec, isolated_cache: Path):
    write_spec("loss helpers\ndef scaled(x) = 2 * x\n", "helpers.loss")
    spec = write_spec(
        'loss user\nuse "helpers.loss"\ninput x : float[N] grad\nterm t = mean(scaled(x))\n'
    )
    x = torch.ones(3)
    assert lossdsl.load(spec)(x=x).loss.item() == 2.0
    write_spec("loss helpers\ndef scaled(x) = 3 * x\n", "helpers.loss")
    assert lossdsl.load(spec)(x=x).loss.item() == 3.0


def test_a_use_in_the_middle_of_a_line_is_part_of_the_key(write_spec, isolated_cache: Path):
    write_spec("loss helper\ndef scaled(x) = 2 * x\n", "helper.loss")
    spec = write_spec(
        'loss oneline use "helper.loss" input x : float[N] grad term t = mean(scaled(x))\n'
    )
    x = torch.ones(3)
    assert lossdsl.load(spec)(x=x).loss.item() == 2.0
    write_spec("loss helper\ndef scaled(x) = 5 * x\n", "helper.loss")
    assert lossdsl.load(spec)(x=x).loss.item() == 5.0


def test_a_spec_reached_through_a_link_is_keyed_on_the_helper_beside_the_link(
    tmp_path: Path, isolated_cache: Path
):
    """A relative `use` is looked up beside the path the spec was named by (the link), and
    the key follows what was read there, not the helper beside the link's target."""
    real, linked = tmp_path / "real", tmp_path / "linked"
    real.mkdir()
    linked.mkdir()
    (real / "spec.loss").write_text(
        'loss user\nuse "helper.loss"\ninput x : float[N] grad\nterm t = mean(scaled(x))\n'
    )
    (real / "helper.loss").write_text("loss helper\ndef scaled(x) = 2 * x\n")
    (linked / "helper.loss").write_text("loss helper\ndef scaled(x) = 3 * x\n")
    (linked / "spec.loss").symlink_to(real / "spec.loss")
    x = torch.ones(3)
    assert lossdsl.load(linked / "spec.loss")(x=x).loss.item() == 3.0
    (linked / "helper.loss").write_text("loss helper\ndef scaled(x) = 4 * x\n")
    assert lossdsl.load(linked / "spec.loss")(x=x).loss.item() == 4.0
    assert lossdsl.load(real / "spec.loss")(x=x).loss.item() == 2.0


def test_an_entry_of_another_spec_copied_over_an_entry_is_not_served(isolated_cache: Path):
    residual = dict(input=torch.tensor([3.0]), target=torch.tensor([0.0]))
    assert lossdsl.load("mse")(**residual).loss.item() == 9.0
    [mse_entry] = entries(isolated_cache)
    assert lossdsl.load("huber")(**residual).loss.item() == 2.5
    [huber_entry] = [e for e in entries(isolated_cache) if e != mse_entry]
    shutil.copyfile(mse_entry, huber_entry)  # a valid entry, but of mse
    reloaded = lossdsl.load("huber")
    assert reloaded.ir.name == "huber"
    assert reloaded(**residual).loss.item() == 2.5


def test_a_comment_line_moves_the_warnings_of_a_cached_spec(write_spec, isolated_cache: Path):
    """The IR keeps spans and rendered warnings, so a comment that shifts lines is a new
    entry: the warning names the line it is on now."""
    hazard = "loss h\ninput x : float[N] grad\nterm t = mean(log(x))\n"
    spec = write_spec(hazard)
    with pytest.warns(lossdsl.LossSpecWarning, match=r"spec\.loss:3:"):
        lossdsl.load(spec)
    write_spec("# a comment\n" + hazard)
    with pytest.warns(lossdsl.LossSpecWarning, match=r"spec\.loss:4:"):
        lossdsl.load(spec)


def test_a_use_that_fell_back_to_the_standard_library_is_rechecked(
    tmp_path: Path, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
):
    """`use "rl/rl_common"` reached the standard library because no such file was beside the
    spec; once one is there, it wins, and the entry of the earlier build is not served."""
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "spec.loss"
    spec.write_text(
        'loss user\nuse "rl/rl_common"\ninput x : float[N] grad\ninput m : bool[N]\n'
        "term t = masked_mean(x, m)\n"
    )
    out = lossdsl.load(spec)(x=torch.tensor([1.0, 3.0]), m=torch.tensor([True, True]))
    assert out.loss.item() == 2.0
    (tmp_path / "rl").mkdir()
    (tmp_path / "rl" / "rl_common").write_text("not a spec")
    with pytest.raises(lossdsl.LossSpecError, match="E105"):
        lossdsl.load(spec)


def test_an_entry_that_is_a_link_to_dev_zero_is_ignored(write_spec, tmp_path: Path):
    """A read never follows a link in the cache, so an entry pointing at an endless file
    costs nothing: the IR is rebuilt."""
    spec = write_spec(
        "loss z\ninput input : float[N] grad\ninput target : float[N]\n"
        "term t = mean(square(input - target))\n"
    )
    folder = tmp_path / "cache"
    load_in_fresh_process(spec, folder)
    [entry] = entries(folder)
    entry.unlink()
    entry.symlink_to("/dev/zero")
    started = time.monotonic()
    assert load_in_fresh_process(spec, folder, timeout=60) == ["2.5", "True", "True"]
    assert time.monotonic() - started < 30  # generous: the point is that it ends at all


def test_an_entry_over_the_size_cap_is_not_read(
    write_spec, isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
):
    spec = write_spec("loss big\ninput x : float[N] grad\nterm t = mean(x)\n")
    lossdsl.load(spec)
    [entry] = entries(isolated_cache)
    reference = Reference(str(spec), Path.cwd())
    assert cache.load_ir(reference, {}, "inductor", None) is not None
    monkeypatch.setattr(cache, "MAX_ENTRY_BYTES", entry.stat().st_size - 1)
    assert cache.load_ir(reference, {}, "inductor", None) is None


def test_an_entry_is_written_under_a_fresh_name_and_renamed(write_spec, isolated_cache: Path):
    """No temporary file is left behind, and a link planted at an entry's name is replaced,
    never written through."""
    spec = write_spec("loss planted\ninput x : float[N] grad\nterm t = mean(x)\n")
    lossdsl.load(spec)
    [entry] = entries(isolated_cache)
    victim = isolated_cache.parent / "victim.txt"
    victim.write_text("keep me")
    entry.unlink()
    entry.symlink_to(victim)
    lossdsl.load(spec)
    assert victim.read_text() == "keep me"
    assert not entry.is_symlink()
    assert [p.name for p in isolated_cache.iterdir() if p.suffix != ".json"] == []


def test_options_are_part_of_the_key(write_spec):
    path = write_spec("loss k\ninput x : float[N] grad\nterm t = mean(x)\n")
    spec = read_spec_file(path, Reference(str(path), Path.cwd()))
    key = cache.cache_key(spec, {}, "inductor", None)
    assert key != cache.cache_key(spec, {}, "eager", None)
    assert key != cache.cache_key(spec, {}, "inductor", "max-autotune")
    assert key != cache.cache_key(spec, {"agg": "b"}, "inductor", None)


def test_cache_can_be_turned_off(write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LOSSDSL_CACHE", "0")
    monkeypatch.setenv("LOSSDSL_CACHE_DIR", str(tmp_path / "off"))
    lossdsl.load(write_spec("loss off\ninput x : float[N] grad\nterm t = mean(x)\n"))
    assert not (tmp_path / "off").exists()


def test_a_link_planted_at_the_parser_tables_is_neither_read_nor_written_through(
    write_spec, tmp_path: Path
):
    """The parser's pickled tables live in the same folder; a link there is left alone."""
    folder = tmp_path / "cache"
    spec = write_spec("loss tables\ninput x : float[N] grad in [0, 1]\nterm t = mean(x)\n")
    env = {**os.environ, "LOSSDSL_CACHE_DIR": str(folder)}
    command = [sys.executable, "-m", "lossdsl", "check", str(spec)]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
    [tables] = folder.glob("parser-*.pickle")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    tables.unlink()
    tables.symlink_to(victim)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert victim.read_text() == "keep me"


def test_an_ir_read_from_the_cache_equals_the_ir_that_was_built(write_spec):
    """JSON has no tuples: attributes such as `present` or `dim=[B, T]` come back as tuples."""
    spec = write_spec("loss t\ninput x : float[B, T] grad\nterm t = mean(sum(x, dim=[B, T]))\n")
    built = lossdsl.load(spec).ir
    cached = lossdsl.load(spec).ir
    assert cached == built
