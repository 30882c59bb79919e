"""Benchmark suite for issue 5: lossdsl against hand-written PyTorch, eager and compiled.

    python benchmarks/run.py [--quick] [--only NAME] [--json PATH]

Prints one table per case and writes JSON (default benchmarks/results/latest.json).
See docs/performance.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]  # cases.py, and lossdsl when not installed
from cases import CASES, Case, Inputs, LossFn, grad_inputs, largest_input  # noqa: E402

DEFAULT_JSON = REPO / "benchmarks" / "results" / "latest.json"
HAND_EAGER, HAND_COMPILED = "hand eager", "hand compiled"
LOSSDSL_EAGER, LOSSDSL_COMPILED = "lossdsl eager", "lossdsl compiled"
FLOOR = "floor: clone(largest input)"
MIN_SECONDS_PER_SAMPLE = 0.02  # repeat fast variants so one sample is at least this long
WARMUP_CALLS = 3


@dataclass
class Settings:
    quick: bool
    device: str
    rounds: int
    memory: bool
    backend: str = "inductor"  # torch.compile's, for every compiled variant

    @property
    def size_key(self) -> str:
        return "quick" if self.quick else ("gpu" if self.device == "cuda" else "full")


@dataclass
class Row:
    variant: str
    status: str = "ok"  # "ok" or "unavailable (reason)"
    median_ms: float | None = None
    samples_ms: list[float] = field(default_factory=list)
    calls_per_sample: int = 1
    x_floor: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)  # variant time / baseline time
    peak_memory_mib: float | None = None
    memory_note: str = ""
    loss_diff_vs_hand: float | None = None  # |loss - hand eager loss| at warm-up


# ---------------------------------------------------------------- building variants


def unavailable(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".splitlines()[0]
    return f"unavailable ({text[:110]})"


def load_lossdsl(case: Case, compiled: bool, backend: str = "inductor") -> LossFn:
    import lossdsl  # lazily: the compiler may not be there yet

    options = {"compile": True, "backend": backend} if compiled else {}
    module = lossdsl.load(case.spec, params=case.spec_params or None, **options)

    def run(**inputs: Tensor) -> Tensor:
        return module(**case.spec_inputs(inputs)).loss

    return run


def build_variants(case: Case, backend: str = "inductor") -> dict[str, LossFn | str]:
    """Variant name -> loss function, or the reason it is unavailable."""
    variants: dict[str, LossFn | str] = {
        HAND_EAGER: case.hand,
        HAND_COMPILED: torch.compile(case.hand, backend=backend),
    }
    for name, fn in case.extra_variants.items():
        variants[f"{name} eager"] = fn
        if name in case.compiled_extras:
            variants[f"{name} compiled"] = torch.compile(fn, backend=backend)
    for name, compiled in ((LOSSDSL_EAGER, False), (LOSSDSL_COMPILED, True)):
        try:
            variants[name] = load_lossdsl(case, compiled, backend)
        except Exception as error:  # any failure makes the row unavailable
            variants[name] = unavailable(error)
    return variants


def baselines(case: Case) -> list[str]:
    compiled_extras = [f"{name} compiled" for name in case.compiled_extras]
    return [HAND_EAGER, HAND_COMPILED, *compiled_extras]


# ---------------------------------------------------------------- timing


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def forward_backward(fn: LossFn, inputs: Inputs) -> Tensor:
    for tensor in grad_inputs(inputs):
        tensor.grad = None
    loss = fn(**inputs)
    loss.backward()
    return loss.detach()


def seconds_per_call(step: Callable[[], object], calls: int, device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        step()
    synchronize(device)
    return (time.perf_counter() - start) / calls


def calls_for(seconds: float) -> int:
    return max(1, min(1000, round(MIN_SECONDS_PER_SAMPLE / max(seconds, 1e-9))))


def time_case(case: Case, settings: Settings) -> dict:
    size = case.sizes[settings.size_key]
    inputs = case.make_inputs(size, settings.device)
    largest = largest_input(inputs).detach()
    rows: dict[str, Row] = {}
    steps: dict[str, Callable[[], object]] = {FLOOR: lambda: largest.clone()}
    ready: dict[str, LossFn] = {}
    hand_loss = forward_backward(case.hand, inputs).item()

    for name, fn in build_variants(case, settings.backend).items():
        if isinstance(fn, str):
            rows[name] = Row(name, status=fn)
            continue
        print(f"  warming up {case.name} / {name}", file=sys.stderr, flush=True)
        try:
            for _ in range(WARMUP_CALLS):
                loss = forward_backward(fn, inputs)
        except Exception as error:
            rows[name] = Row(name, status=unavailable(error))
            continue
        rows[name] = Row(name, loss_diff_vs_hand=abs(loss.item() - hand_loss))
        steps[name] = lambda fn=fn: forward_backward(fn, inputs)
        ready[name] = fn
    rows[FLOOR] = Row(FLOOR)

    calls = {
        name: calls_for(seconds_per_call(step, 1, settings.device)) for name, step in steps.items()
    }
    order = list(steps)
    for round_index in range(settings.rounds):  # round-robin, rotating who goes first
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            seconds = seconds_per_call(steps[name], calls[name], settings.device)
            rows[name].samples_ms.append(seconds * 1e3)
            rows[name].calls_per_sample = calls[name]

    for row in rows.values():
        if row.samples_ms:
            row.median_ms = statistics.median(row.samples_ms)
    floor_ms = rows[FLOOR].median_ms
    for row in rows.values():
        if row.median_ms is None:
            continue
        row.x_floor = row.median_ms / floor_ms
        if row.variant == FLOOR:
            continue
        for base in baselines(case):
            base_ms = rows[base].median_ms if base in rows else None
            if base_ms:
                row.ratios[base] = row.median_ms / base_ms

    if settings.memory:
        for name, fn in ready.items():
            if settings.device == "cuda":  # the allocator's own peak: exact in this process
                record_memory(rows[name], peak_growth(fn, inputs, settings.device))
            else:
                measure_memory_in_subprocess(case, rows[name], settings)

    return {
        "sizes": size,
        "largest_input": {"shape": list(largest.shape), "dtype": str(largest.dtype)},
        "baselines": baselines(case),
        "rows": {name: asdict(row) for name, row in rows.items()},
    }


# ---------------------------------------------------------------- peak memory


def status_kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak_rss() -> bool:
    """Linux resets VmHWM to the current RSS when "5" is written to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_memory(case_name: str, variant: str, settings: Settings) -> dict:
    """Peak growth of one fwd+bwd after warm-up; runs inside a fresh subprocess (the CPU's
    resident set counts everything the process ever freed to glibc)."""
    case = CASES[case_name]
    inputs = case.make_inputs(case.sizes[settings.size_key], settings.device)
    fn = build_variants(case, settings.backend)[variant]
    if isinstance(fn, str):
        return {"error": fn}
    for _ in range(WARMUP_CALLS):
        forward_backward(fn, inputs)
    return peak_growth(fn, inputs, settings.device)


def peak_growth(fn: LossFn, inputs: Inputs, device: str) -> dict:
    """Peak growth of one fwd+bwd of a warmed-up variant."""
    for tensor in grad_inputs(inputs):
        tensor.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        forward_backward(fn, inputs)
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - before, "method": "cuda"}

    if reset_peak_rss():
        before = status_kib("VmRSS")
        forward_backward(fn, inputs)
        return {"peak_bytes": (status_kib("VmHWM") - before) * 1024, "method": "VmHWM"}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    forward_backward(fn, inputs)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_bytes": (after - before) * 1024, "method": "ru_maxrss (lower bound)"}


def measure_memory_in_subprocess(case: Case, row: Row, settings: Settings) -> None:
    command = [sys.executable, __file__, "--measure-memory", case.name, row.variant]
    command += ["--device", settings.device, "--backend", settings.backend]
    command += ["--quick"] if settings.quick else []
    print(f"  memory {case.name} / {row.variant}", file=sys.stderr, flush=True)
    # A fixed mmap threshold makes glibc return every freed block of 64 KiB or more to the OS, so
    # warm-up allocations are not recycled unseen and the resident set tracks live tensors.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        row.memory_note = f"failed: {done.stderr.strip().splitlines()[-1:]}"
        return
    record_memory(row, result)


def record_memory(row: Row, result: dict) -> None:
    if "error" in result:
        row.memory_note = result["error"]
    else:
        row.peak_memory_mib = result["peak_bytes"] / 2**20
        row.memory_note = result["method"]


# ---------------------------------------------------------------- front end


def median_seconds(commands: list[list[str]], repeats: int) -> list[float]:
    """Median wall time of each command, the commands run in turn (interleaved, so load that
    comes and goes hits them alike)."""
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(repeats):
        for command, times in zip(commands, samples, strict=True):
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=False)
            times.append(time.perf_counter() - start)
    return [statistics.median(times) for times in samples]


def time_front_end(settings: Settings) -> dict:
    result: dict[str, object] = {}
    spec_files = sorted((REPO / "specs").rglob("*.loss"))
    result["spec_files"] = len(spec_files)
    try:
        import lossdsl

        start = time.perf_counter()
        for path in spec_files:
            lossdsl.check(str(path))
        result["stdlib_check_cold_s"] = time.perf_counter() - start
        warm = []
        for _ in range(3):
            start = time.perf_counter()
            for path in spec_files:
                lossdsl.check(str(path))
            warm.append(time.perf_counter() - start)
        result["stdlib_check_warm_s"] = statistics.median(warm)
    except Exception as error:
        result["stdlib_check"] = unavailable(error)

    repeats = 3 if settings.quick else 5
    try:
        result["cached_load"] = time_cached_load(repeats)
    except Exception as error:  # lossdsl or its cache not available
        result["cached_load"] = unavailable(error)
    import_torch = [sys.executable, "-c", "import torch"]
    cli = shutil.which("lossdsl", path=str(Path(sys.executable).parent)) or shutil.which("lossdsl")
    if cli is None:
        result["cli_check_huber"] = "unavailable (no `lossdsl` command)"
    elif subprocess.run([cli, "check", "huber"], capture_output=True).returncode == 2:
        result["cli_check_huber"] = "unavailable (`lossdsl check huber` exits 2)"
    else:  # the run above also warmed the caches a user's second `lossdsl check` finds
        torch_s, cli_s = median_seconds([import_torch, [cli, "check", "huber"]], repeats)
        result["import_torch_s"], result["cli_check_huber_s"] = torch_s, cli_s
        result["cli_over_import_torch"] = cli_s / torch_s
        return result
    result["import_torch_s"] = median_seconds([import_torch], repeats)[0]
    return result


CACHED_LOAD = """
import sys, time, torch
start = time.perf_counter()
import lossdsl
lossdsl.load("ppo")
print(time.perf_counter() - start, "lark" in sys.modules)
"""


def time_cached_load(repeats: int) -> dict:
    """`lossdsl.load("ppo")` in fresh processes sharing one new IR cache: the first builds
    the IR (parse, check, passes); the later ones read it back (no lark imported)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "LOSSDSL_CACHE_DIR": cache, "LOSSDSL_CACHE": "1"}

        def once() -> tuple[float, bool]:
            out = subprocess.run(
                [sys.executable, "-c", CACHED_LOAD],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            ).stdout.split()
            return float(out[0]), out[1] == "True"

        cold, cold_parsed = once()
        warm = [once() for _ in range(repeats)]
    return {
        "load_cold_s": cold,
        "load_warm_s": statistics.median(t for t, _ in warm),
        "cold_parsed": cold_parsed,
        "warm_parsed": any(parsed for _, parsed in warm),
    }


# ---------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def print_case(name: str, result: dict) -> None:
    base_names = result["baselines"]
    header = ["variant", "median ms", "x floor", "peak MiB", "|loss-hand|"]
    header += [f"/ {base}" for base in base_names]
    lines = [header]
    for row in result["rows"].values():
        if row["median_ms"] is None:
            lines.append([row["variant"], row["status"]])
            continue
        diff = row["loss_diff_vs_hand"]
        lines.append(
            [
                row["variant"],
                fmt(row["median_ms"], ".3f"),
                fmt(row["x_floor"], ".1f", "x"),
                fmt(row["peak_memory_mib"], ".1f"),
                "-" if diff is None else f"{diff:.1e}",
                *[fmt(row["ratios"].get(base), ".2f", "x") for base in base_names],
            ]
        )
    sizes = ", ".join(f"{k}={v}" for k, v in result["sizes"].items())
    print(f"\n== {name} ({sizes}; floor = clone of {result['largest_input']['shape']})")
    full_lines = [line for line in lines if len(line) == len(header)]
    widths = [max(len(line[i]) for line in full_lines) for i in range(len(header))]
    for line in lines:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip()
        )


def print_front_end(result: dict) -> None:
    print("\n== front end")
    if "stdlib_check_cold_s" in result:
        print(
            f"lossdsl.check on {result['spec_files']} stdlib specs: "
            f"cold {result['stdlib_check_cold_s'] * 1e3:.1f} ms, "
            f"warm {result['stdlib_check_warm_s'] * 1e3:.1f} ms"
        )
    else:
        print(f"lossdsl.check on {result['spec_files']} stdlib specs: {result['stdlib_check']}")
    print(f"python -c 'import torch': {result['import_torch_s']:.3f} s")
    if "cli_check_huber_s" in result:
        print(
            f"lossdsl check huber: {result['cli_check_huber_s']:.3f} s "
            f"({result['cli_over_import_torch']:.2f}x import torch; target < 0.5x)"
        )
    else:
        print(f"lossdsl check huber: {result['cli_check_huber']}")
    cached = result.get("cached_load")
    if isinstance(cached, dict):
        print(
            f"lossdsl.load('ppo') in a fresh process: first {cached['load_cold_s'] * 1e3:.0f} ms "
            f"(parsed: {cached['cold_parsed']}), from the IR cache "
            f"{cached['load_warm_s'] * 1e3:.0f} ms (parsed: {cached['warm_parsed']})"
        )
    elif cached is not None:
        print(f"lossdsl.load from the IR cache: {cached}")


def load_average() -> str:
    """The 1, 5 and 15-minute load averages (other processes share the machine)."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def machine() -> dict:
    info = {
        "load_average": {"start": load_average()},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


# ---------------------------------------------------------------- command line


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and 3 rounds (smoke test)")
    parser.add_argument("--only", action="append", choices=sorted(CASES), help="run only this case")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--rounds", type=int, help="timing rounds (default 15, 3 with --quick)")
    parser.add_argument(
        "--no-memory", action="store_true", help="skip the peak-memory subprocesses"
    )
    parser.add_argument("--no-front-end", action="store_true", help="skip the front-end timings")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="inductor", help="torch.compile's backend")
    parser.add_argument(
        "--measure-memory", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    rounds = args.rounds or (3 if args.quick else 15)
    settings = Settings(
        quick=args.quick,
        device=args.device,
        rounds=rounds,
        memory=not args.no_memory,
        backend=args.backend,
    )
    if args.measure_memory:
        print(json.dumps(measure_memory(*args.measure_memory, settings)))
        return

    started = time.perf_counter()
    report: dict = {"machine": machine(), "settings": asdict(settings), "cases": {}}
    for name in args.only or list(CASES):
        print(f"running {name}", file=sys.stderr, flush=True)
        report["cases"][name] = time_case(CASES[name], settings)
        print_case(name, report["cases"][name])
    if not args.no_front_end:
        report["front_end"] = time_front_end(settings)
        print_front_end(report["front_end"])
    report["total_seconds"] = time.perf_counter() - started
    report["machine"]["load_average"]["end"] = load_average()

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nload average {report['machine']['load_average']}")
    print(f"wrote {args.json} ({report['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
