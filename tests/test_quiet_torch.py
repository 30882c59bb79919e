"""A clean install has no numpy (it is only in the `dev` extra), and torch warns `Failed to
initialize NumPy` when it is imported without it. Loading and calling a loss, and the CLI
commands that need torch, must print nothing the user did not cause."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Run first in the child: numpy cannot be imported, as in an environment without it.
WITHOUT_NUMPY = """
import sys

class NoNumpy:
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" or name.startswith("numpy."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoNumpy())
"""

LOAD_AND_CALL = """
import lossdsl

loss_fn = lossdsl.load("huber")
import torch

pred = torch.randn(8, requires_grad=True)
out = loss_fn(input=pred, target=torch.randn(8))
out.loss.backward()
print("loss", out.loss.item(), "grad", pred.grad.shape[0])
"""


def run_without_numpy(program: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {"LOSSDSL_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_NUMPY + program],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_torch_itself_warns_without_numpy(tmp_path: Path) -> None:
    """The premise: in this environment, a plain `import torch` prints torch's warning."""
    result = run_without_numpy("import torch\n", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Failed to initialize NumPy" in result.stderr


def test_load_and_call_print_nothing_without_numpy(tmp_path: Path) -> None:
    result = run_without_numpy(LOAD_AND_CALL, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("loss ") and result.stdout.strip().endswith("grad 8")
    assert result.stderr == ""


def test_input_error_import_prints_nothing_without_numpy(tmp_path: Path) -> None:
    result = run_without_numpy("import lossdsl\nprint(lossdsl.InputError.__name__)\n", tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "InputError\n", "")


def test_cli_explain_prints_nothing_on_stderr_without_numpy(tmp_path: Path) -> None:
    program = (
        "import sys\nfrom lossdsl.cli import main\n"
        "sys.argv = ['lossdsl', 'explain', 'mse']\nmain()\n"
    )
    result = run_without_numpy(program, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "def forward" in result.stdout
    assert result.stderr == ""
