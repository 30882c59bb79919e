"""Shared fixtures: write a spec to a file and load it."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_ir_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's IR cache."""
    os.environ["LOSSDSL_CACHE_DIR"] = str(tmp_path_factory.mktemp("ir-cache"))


@pytest.fixture(autouse=True)
def recursion_limit_kept() -> object:
    """Inductor lifts the recursion limit to 2000 whenever it compiles a graph its cache does
    not hold; put it back, so that the front end's tests run at the limit a user has."""
    limit = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(limit)


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """write_spec(text, name="spec.loss") -> the path of a spec file holding `text`."""

    def write(text: str, name: str = "spec.loss") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default="cpu",
        help="where tests/test_device.py runs the standard specs (cpu, cuda, cuda:1, …)",
    )


@pytest.fixture(scope="session")
def device(pytestconfig: pytest.Config) -> str:
    """The device `--device` names; asking for one this machine lacks fails every test that
    uses it (a GPU run that silently ran on the CPU would report nothing)."""
    import torch

    name = pytestconfig.getoption("--device")
    try:
        torch.empty(0, device=name)
    except (RuntimeError, AssertionError) as error:
        pytest.fail(f"--device {name}: {error}", pytrace=False)
    return name
