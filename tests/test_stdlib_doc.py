"""docs/stdlib.md documents the bounds the analysis proves for every standard spec."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_stdlib_page_matches_the_analysis():
    spec = importlib.util.spec_from_file_location("stdlib_doc", ROOT / "scripts" / "stdlib_doc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "stdlib.md").read_text()
    assert committed == module.render(), (
        "docs/stdlib.md is out of date: run `python scripts/stdlib_doc.py > docs/stdlib.md`"
    )


def test_documented_preference_and_rl_bounds_are_proven():
    """The bounds the RL and preference specs document in their docstrings hold."""
    page = (ROOT / "docs" / "stdlib.md").read_text()
    for row in [
        "| `dpo` | `(0, inf)` |",
        "| `preference` | `(0, inf)` |",
        "| `nll` | `[0, inf)` |",
        "| `entropy` | `[0, inf)` |",
        "| `value` | `[0, inf)` |",
    ]:
        assert row in page, row
