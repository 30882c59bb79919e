"""benchmarks/run.py at quick sizes through aot_eager: the hand-written loss and lossdsl,
eager and compiled, timed against the floor, measured in their own processes, computing
the same loss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def test_a_case_is_timed_measured_and_agrees_with_the_hand_written_loss(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--only", "huber", "--no-front-end"]
    command += ["--backend", "aot_eager", "--json", str(out)]
    subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    rows = json.loads(out.read_text())["cases"]["huber"]["rows"]
    assert set(rows) == {
        "hand eager",
        "hand compiled",
        "lossdsl eager",
        "lossdsl compiled",
        "floor: clone(largest input)",
    }
    for name, row in rows.items():
        assert row["status"] == "ok" and row["median_ms"] > 0, name
        if name.startswith("floor"):
            continue
        assert row["loss_diff_vs_hand"] < 1e-5, name
        assert row["peak_memory_mib"] is not None and row["memory_note"], name
        assert row["ratios"]["hand eager"] > 0, name
