"""benchmarks/compiled_profile.py at quick sizes through aot_eager: each variant timed, with
its compiled graphs and (suite) its distance to float64, then its profiler table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "compiled_profile.py"


def profile(*arguments: str) -> str:
    command = [sys.executable, str(SCRIPT), *arguments, "--backend", "aot_eager", "--rows", "3"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return done.stdout


def test_a_suite_case_is_timed_static_and_dynamic_against_float64() -> None:
    out = profile("suite", "huber")
    lines = re.findall(
        r"^huber +(.+?) +([\d.]+) ms +graphs (\d+) +loss - float64 (\S+)$", out, re.M
    )
    assert [line[0] for line in lines] == [
        "hand compiled",
        "lossdsl compiled",
        "lossdsl compiled, static shapes",
    ]
    for _, _, graphs, off in lines:
        assert int(graphs) >= 1 and abs(float(off)) < 1e-5
    assert out.count("--- huber / ") == 3 and "Self CPU time total" in out


def test_a_vocabulary_case_profiles_sliced_and_unsliced() -> None:
    out = profile("vocab", "cross_entropy")
    assert re.search(r"lossdsl sliced compiled +[\d.]+ ms +graphs [1-9]", out)
    assert re.search(r"lossdsl unsliced compiled +[\d.]+ ms +graphs 1", out)
    assert out.count("--- cross_entropy / ") == 2
