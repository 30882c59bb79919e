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
