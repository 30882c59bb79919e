"""benchmarks/head_products.py at toy sizes: every product in both layouts, every slice size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "head_products.py"


def test_the_table_has_each_product_at_each_slice_size_and_at_once() -> None:
    command = [sys.executable, str(SCRIPT), "--rows", "16", "--hidden", "8", "--vocab", "32"]
    command += ["--slices", "4", "8", "--repeats", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    lines = done.stdout.strip().splitlines()
    assert lines[1].split()[1:] == ["4", "rows", "8", "rows", "16", "rows"]
    rows = lines[2:]
    assert len(rows) == 6  # three products, each row-major and vocabulary-major
    for row in rows:
        cells = row.split("  ")[-1]  # the last column: the product over all rows at once
        assert cells.strip().endswith("(1.00)")
        assert row.count("(") == 3
