"""benchmarks/vocab.py at quick sizes through aot_eager: every lossdsl variant, one extra
slice size, timed and measured in its own process, computing the loss torch computes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "vocab.py"


def test_each_variant_is_timed_measured_and_computes_the_same_loss(tmp_path: Path) -> None:
    out = tmp_path / "vocab.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--backend", "aot_eager"]
    command += ["--case", "cross_entropy", "--chunk", "8", "--json", str(out)]
    subprocess.run(command, capture_output=True, text=True, timeout=600, check=True)
    rows = {row["variant"]: row for row in json.loads(out.read_text())["cases"]["cross_entropy"]}
    ours = [name for name in rows if name.startswith("lossdsl")]
    assert ours == [
        "lossdsl sliced compiled",
        "lossdsl sliced eager",
        "lossdsl unsliced compiled",
        "lossdsl sliced eager, chunk=8",
    ]
    reference = rows["F.linear_cross_entropy"]["loss"]
    for name in ours:
        row = rows[name]
        assert row["status"] == "ok" and len(row["samples_s"]) == 2, name
        assert row["memory_method"] == "VmHWM" and row["extra_mib"] is not None, name
        assert abs(row["loss"] - reference) < 1e-5, name
    assert "Liger fused linear CE" in rows  # reported, available or not
