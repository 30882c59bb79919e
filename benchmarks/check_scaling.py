"""How `lossdsl check` time grows with a spec's size: it should grow linearly.

    python benchmarks/check_scaling.py [--sizes 1000,2000,4000,8000] [--repeats 3]

For each family of generated specs (a chain of lets, many terms, one long expression,
deep nesting, defs that call the previous one twice, a chain of schedule params), times the
whole front end (parse, build, passes) at growing sizes and prints the time per unit of
size. Linear time shows as a steady time per unit: the last column, the time per unit
relative to the smallest size, stays near 1 (a quadratic cost would double it at every
doubling of the size). Then times the two cases the issue gave a budget of 1 s.
Front end only: torch is not imported.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # lossdsl when not installed
from lossdsl.passes.pipeline import check_text  # noqa: E402
from lossdsl.syntax.parser import parse_collecting  # noqa: E402

HEADER = "loss scaling\ninput x : float[N] grad in [0, 1]\n"


def lets(n: int) -> str:
    chain = "".join(f"let a{i} = a{i - 1} + 1\n" for i in range(1, n))
    return HEADER + "let a0 = x\n" + chain + f"term t = mean(square(a{n - 1}))\n"


def terms(n: int) -> str:
    declared = "".join(f"term t{i} = mean(square(x)) * {i % 7}\n" for i in range(n))
    return HEADER + declared + "minimize " + " + ".join(f"t{i}" for i in range(n)) + "\n"


def long_expression(n: int) -> str:
    return HEADER + "term t = mean(square(x" + " + 0.5" * n + "))\n"


def deep_nesting(n: int) -> str:
    return HEADER + "term t = mean(square(" + "-" * n + "x))\n"


def doubling_defs(n: int) -> str:
    defs = "def f0(y) = y * 2\n"
    defs += "".join(f"def f{i}(y) = f{i - 1}(y) + f{i - 1}(y)\n" for i in range(1, n))
    return HEADER + defs + f"term t = mean(square(f{n - 1}(x)))\n"


def schedule_params(n: int) -> str:
    chain = "".join(f"param p{i} = p{i - 1} * 1\n" for i in range(1, n))
    body = f"term t = mean(square(x))\nminimize p{n - 1} * t\n"
    return HEADER + "param p0 = linear(1, 0, steps=100)\n" + chain + body


def warnings_in_a_chain(n: int) -> str:
    chain = "".join(f"let a{i} = a{i - 1} + log(x)\n" for i in range(1, n))  # W300 each
    return HEADER + "let a0 = x\n" + chain + f"term t = mean(a{n - 1})\n"


FAMILIES: dict[str, Callable[[int], str]] = {
    "chain of lets": lets,
    "terms in minimize": terms,
    "operands of one sum": long_expression,
    "nested unary minus": deep_nesting,
    "defs calling twice": doubling_defs,
    "chain of params": schedule_params,
    "a warning per let": warnings_in_a_chain,
}


def best_time(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def check(text: str) -> None:
    checked = check_text(text, "scaling.loss")
    errors = [d for d in checked.diagnostics if d.severity == "error"]
    assert not errors, errors[0].render(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,4000,8000")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load:.1f}, Python {platform.python_version()}"
    )
    check(HEADER + "term t = mean(x)\n")  # build (or read) the parser tables first

    print(f"\n{'family':<22}{'size':>7}{'seconds':>10}{'µs/unit':>10}{'per unit vs first':>20}")
    for family, generate in FAMILIES.items():
        first = None
        for size in sizes:
            text = generate(size)
            seconds = best_time(lambda text=text: check(text), options.repeats)
            per_unit = seconds / size * 1e6
            first = first or per_unit
            ratio = per_unit / first
            print(f"{family:<22}{size:>7}{seconds:>10.3f}{per_unit:>10.1f}{ratio:>20.2f}")

    print("\nbudgets (issue 14: under 1 s each)")
    long_name = f"loss x\nlet {'a' * 40_000} = = 1\n"
    seconds = best_time(lambda: parse_collecting(long_name, "long.loss"), options.repeats)
    print(f"  syntax error after a 40,000-character name: {seconds:.3f} s")
    seconds = best_time(lambda: check(doubling_defs(19)), options.repeats)
    print(f"  18 defs, each calling the previous one twice: {seconds:.3f} s")


if __name__ == "__main__":
    main()
