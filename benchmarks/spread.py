"""The spread of several runs of benchmarks/run.py, as the tables of docs/performance.md.

    python benchmarks/spread.py RUN1.json RUN2.json [...]

Each figure is `min–max` over the runs (one number when they agree to the digits shown):
median ms, peak MiB, and every ratio, each ratio taken within one run (its variants timed
in interleaved rounds) before the runs are compared. The machine's load average at the start
and end of each run is printed above the tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def spread(values: list[float | None], digits: int) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "-"
    low, high = f"{min(known):.{digits}f}", f"{max(known):.{digits}f}"
    return low if low == high else f"{low}–{high}"


def digits_for(values: list[float | None]) -> int:
    known = [v for v in values if v is not None]
    return 3 if known and max(known) < 1 else 2 if known and max(known) < 10 else 1


def case_table(name: str, cases: list[dict]) -> list[str]:
    first = cases[0]
    bases = first["baselines"]
    sizes = " ".join(f"{k}={v}" for k, v in first["sizes"].items())
    header = ["case", "variant", "median ms", "peak MiB", *[f"/ {b}" for b in bases]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, variant in enumerate(first["rows"]):
        rows = [case["rows"].get(variant, {}) for case in cases]
        if variant.startswith("floor"):
            continue
        times = [row.get("median_ms") for row in rows]
        if all(t is None for t in times):
            status = rows[0].get("status", "unavailable")
            lines.append(f"| {f'{name} {sizes}' if index == 0 else ''} | {variant} | {status} |")
            continue
        memory = [row.get("peak_memory_mib") for row in rows]
        ratios = [spread([row.get("ratios", {}).get(b) for row in rows], 2) for b in bases]
        cells = [
            f"{name} {sizes}" if index == 0 else "",
            variant,
            spread(times, digits_for(times)),
            spread(memory, 1),
            *ratios,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(paths: list[str]) -> None:
    runs = [json.loads(Path(path).read_text()) for path in paths]
    for path, run in zip(paths, runs, strict=True):
        load = run["machine"].get("load_average", {})
        print(
            f"{path}: load average {load.get('start', '?')} at the start, "
            f"{load.get('end', '?')} at the end; {run['total_seconds']:.0f} s"
        )
    print()
    names = [name for name in runs[0]["cases"] if all(name in run["cases"] for run in runs)]
    for name in names:
        print("\n".join(case_table(name, [run["cases"][name] for run in runs])))
        print()


if __name__ == "__main__":
    main(sys.argv[1:])
