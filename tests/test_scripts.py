"""The set-up and demo scripts say what they are doing before the slow parts (issue 14,
item 22): each install step of scripts/env.sh names what it installs and roughly how long
it takes before pip starts, and the demo announces the first compiled call."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Stands in for .venv/bin/python: imports fail (nothing installed yet) or succeed (all
# installed), and pip only says it ran.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then exit {imports}; fi
echo "PIP RAN: $*" >&2
"""


def checkout_with_fake_python(tmp_path: Path, installed: bool) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "env.sh", tmp_path / "scripts" / "env.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON.format(imports=0 if installed else 1))
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    if installed:
        marker = tmp_path / ".venv" / ".lossdsl-installed"
        marker.touch()
        later = (tmp_path / "pyproject.toml").stat().st_mtime + 10
        os.utime(marker, (later, later))
    return tmp_path


def source_env_sh(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", "source scripts/env.sh"],
        cwd=checkout,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "HOME": str(checkout)},
        timeout=60,
    )


def test_env_sh_announces_each_install_and_its_duration_before_pip_runs(tmp_path: Path) -> None:
    result = source_env_sh(checkout_with_fake_python(tmp_path, installed=False))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    pip_runs = [i for i, line in enumerate(lines) if line.startswith("PIP RAN")]
    assert len(pip_runs) == 2, result.stderr  # torch, then lossdsl with its tools
    for run, installs in zip(pip_runs, ["torch", "lossdsl"], strict=True):
        before = lines[run - 1]
        assert before.startswith("env.sh: installing") and installs in before, before
        assert re.search(r"about \d+(-\d+)? (seconds|minutes?)", before), before
        assert re.match(r"env\.sh: +done in \d+ s", lines[run + 1]), lines[run + 1]


def test_env_sh_is_silent_when_the_environment_is_ready(tmp_path: Path) -> None:
    """Every script sources env.sh: once .venv is set up it adds nothing to their output."""
    result = source_env_sh(checkout_with_fake_python(tmp_path, installed=True))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def demo_module():
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_announces_the_first_compiled_call_and_its_duration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo = demo_module()
    assert "15-45 s" in demo.compile_notice("inductor")
    demo.train_ppo(compile=True, backend="eager")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("compiling the loss with torch.compile")
    assert re.fullmatch(r"compiled in \d+ s", lines[1]), lines[:3]
    assert lines[2].startswith("ppo (compiled) step 0:")
    assert sum(line.startswith("compiling") for line in lines) == 1


def test_demo_does_not_announce_compilation_when_eager(
    capsys: pytest.CaptureFixture[str],
) -> None:
    demo_module().train_ppo(compile=False)
    assert "compil" not in capsys.readouterr().out.replace("(compiled)", "")


def test_gpu_sh_stops_at_once_without_a_cuda_device(tmp_path: Path) -> None:
    """scripts/gpu.sh on a machine without CUDA says so and fails before running anything."""
    if importlib.util.find_spec("torch") and __import__("torch").cuda.is_available():
        pytest.skip("this machine has a CUDA device: gpu.sh would run in full")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu.sh"), str(tmp_path / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "LOSSDSL_PYTHON": sys.executable},
        timeout=120,
    )
    assert result.returncode == 1
    assert "no CUDA device" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []  # no test and no benchmark ran


def test_gpu_sh_runs_the_named_steps_in_order_within_its_time(tmp_path: Path) -> None:
    """With an interpreter that only echoes its arguments (and so passes the CUDA check):
    each named step's command lands in its own file, an unknown step fails the run, and
    with no time left a step is skipped, not run."""
    echo = tmp_path / "python"
    echo.write_text('#!/usr/bin/env bash\necho "python $*"\n')
    echo.chmod(0o755)

    def gpu_sh(seconds: str, *steps: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(ROOT / "scripts" / "gpu.sh"), str(tmp_path / "out"), *steps],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "LOSSDSL_PYTHON": str(echo), "GPU_SECONDS": seconds},
            timeout=60,
        )

    done = gpu_sh("600", "device-tests", "vocab-llm")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    assert (
        "-m pytest -q tests/test_device.py --device cuda" in (out / "device-tests.txt").read_text()
    )
    assert "benchmarks/vocab.py --llm --device cuda" in (out / "vocab-llm.txt").read_text()
    assert done.stdout.index("== device-tests") < done.stdout.index("== vocab-llm")

    assert gpu_sh("600", "no-such-step").returncode == 1
    skipped = gpu_sh("0", "suite-bench")
    assert skipped.returncode == 1
    assert "skipped, no time left" in (out / "suite-bench.txt").read_text()


if sys.platform == "win32":  # pragma: no cover - the scripts are bash
    pytestmark = pytest.mark.skip("bash scripts")
