"""`pip install .` (not editable) gives a `lossdsl` command that finds its data anywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with lossdsl installed from a copy of the source tree."""
    base = tmp_path_factory.mktemp("pkg")
    source = base / "src"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.egg-info", "build", "__pycache__", ".*_cache", "benchmarks"
        ),
    )
    venv = base / "venv"
    # The test environment's torch and friends are visible; lossdsl itself is not.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    parent_site = [p for p in sys.path if p.endswith("site-packages")]
    (site / "parent.pth").write_text("\n".join(parent_site) + "\n")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(base / "target"),
            str(source),
        ],
        check=True,
        env=env,
        cwd=base,
    )
    return base


def run(installed: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed / "target")
    program = "import sys; from lossdsl.cli import main; sys.argv[0] = 'lossdsl'; main()"
    python = installed / "venv" / "bin" / "python"
    return subprocess.run(
        [str(python), "-c", program, *args], capture_output=True, text=True, cwd=installed, env=env
    )


def test_installed_package_ships_grammar_and_standard_library(installed: Path):
    data = installed / "target" / "lossdsl" / "_data"
    assert (data / "grammar" / "loss.lark").is_file()
    assert (data / "specs" / "huber.loss").is_file()


def test_installed_package_ships_the_language_reference(installed: Path):
    docs = installed / "target" / "lossdsl" / "_data" / "docs"
    assert (docs / "language.md").read_text() == (ROOT / "docs" / "language.md").read_text()
    assert (docs / "diagnostics.md").is_file()


def test_installed_command_checks_and_lists_from_another_directory(installed: Path):
    checked = run(installed, "check", "huber", "cross_entropy")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = run(installed, "list")
    assert "huber" in listed.stdout
    assert str(ROOT) not in checked.stdout + listed.stdout
