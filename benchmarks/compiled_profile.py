"""Where a compiled loss spends its time: the profiler's table of one forward + backward.

    python benchmarks/compiled_profile.py suite huber grpo --device cuda
    python benchmarks/compiled_profile.py vocab cross_entropy --device cuda

`suite CASE...` (benchmarks/cases.py, at the GPU sizes on CUDA, the quick ones elsewhere):
hand-written compiled, lossdsl compiled as it is, and lossdsl compiled with no dims marked
dynamic (static shapes: what dynamic shapes cost), each with its time per call, the graphs
Dynamo compiled for it, and its loss minus the float64 hand-written loss. `vocab CASE...`
(benchmarks/vocab.py, at LLM sizes in bf16 on CUDA, quick sizes elsewhere): lossdsl sliced
and unsliced, compiled. Then the profiler's table of each variant, sorted by the device's
own time (CUDA) or the CPU's; `--tables DIR` writes the whole tables there.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "benchmarks"), str(REPO)]
import vocab  # noqa: E402
from cases import CASES, Case, Inputs  # noqa: E402
from vocab import forward_backward, synchronize  # noqa: E402  (a float loss; a CUDA sync)

import lossdsl  # noqa: E402
from lossdsl.backend import compiled  # noqa: E402

Step = Callable[[Inputs], torch.Tensor]


def ms_per_call(fn: Step, inputs: Inputs, device: str, calls: int = 10) -> float:
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        forward_backward(fn, inputs)
    synchronize(device)
    return (time.perf_counter() - start) / calls * 1e3


def unmarked(graph: compiled.CompiledGraph, tensor: torch.Tensor, dims: list) -> torch.Tensor:
    """CompiledGraph's input preparation without dynamic marks: static shapes."""
    return compiled._Alias.apply(tensor) if tensor.requires_grad else tensor.detach()


def lossdsl_step(case: Case, backend: str, static: bool = False) -> Step:
    module = lossdsl.load(case.spec, params=case.spec_params or None, compile=True, backend=backend)
    marked = compiled.CompiledGraph._marked

    def run(inputs: Inputs) -> torch.Tensor:
        if static:
            compiled.CompiledGraph._marked = unmarked  # type: ignore[method-assign]
        try:
            return module(**case.spec_inputs(inputs)).loss
        finally:
            compiled.CompiledGraph._marked = marked  # type: ignore[method-assign]

    return run


def graphs_compiled() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def profile_table(fn: Step, inputs: Inputs, device: str, rows: int) -> str:
    forward_backward(fn, inputs)
    synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        forward_backward(fn, inputs)
        synchronize(device)
    key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=60)


def suite_variants(name: str, settings: argparse.Namespace) -> tuple[dict[str, Step], Inputs]:
    case = CASES[name]
    inputs = case.make_inputs(
        case.sizes["gpu" if settings.device == "cuda" else "quick"], settings.device
    )
    hand = torch.compile(case.hand, backend=settings.backend)
    return {
        "hand compiled": lambda i: hand(**i),
        "lossdsl compiled": lossdsl_step(case, settings.backend),
        "lossdsl compiled, static shapes": lossdsl_step(case, settings.backend, static=True),
    }, inputs


def float64_loss(name: str, inputs: Inputs) -> float:
    wide = {k: v.double() if v.is_floating_point() else v for k, v in inputs.items()}
    return float(CASES[name].hand(**wide))


def vocab_variants(name: str, settings: argparse.Namespace) -> tuple[dict[str, Step], Inputs]:
    size, dtype = ("llm", torch.bfloat16) if settings.device == "cuda" else ("quick", torch.float32)
    sizes = vocab.SIZES[size]
    inputs = vocab.make_inputs(name, sizes, dtype, settings.device)
    return {
        "lossdsl sliced compiled": vocab.lossdsl_variant(
            name, chunk="auto", compile=True, backend=settings.backend
        ),
        "lossdsl unsliced compiled": vocab.lossdsl_variant(
            name, compile=True, backend=settings.backend
        ),
    }, inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["suite", "vocab"])
    parser.add_argument("cases", nargs="+")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--rows", type=int, default=8, help="rows of each profiler table")
    parser.add_argument("--tables", type=Path, help="a folder for the whole tables")
    settings = parser.parse_args()
    print(f"torch {torch.__version__}, device {settings.device}, backend {settings.backend}")
    for name in settings.cases:
        made = suite_variants if settings.kind == "suite" else vocab_variants
        steps, inputs = made(name, settings)
        reference = float64_loss(name, inputs) if settings.kind == "suite" else None
        for label, fn in steps.items():
            before = graphs_compiled()
            loss = forward_backward(fn, inputs)
            forward_backward(fn, inputs)
            ms = ms_per_call(fn, inputs, settings.device)
            off = f"  loss - float64 {loss - reference:+.2e}" if reference is not None else ""
            graphs = graphs_compiled() - before
            print(f"{name:14} {label:32} {ms:10.3f} ms  graphs {graphs}{off}", flush=True)
        for label, fn in steps.items():
            table = profile_table(fn, inputs, settings.device, settings.rows)
            print(f"\n--- {name} / {label}\n{table}", flush=True)
            if settings.tables:
                settings.tables.mkdir(parents=True, exist_ok=True)
                with open(settings.tables / f"profile-{settings.kind}.txt", "a") as out:
                    out.write(f"\n--- {name} / {label}\n{table}\n")


if __name__ == "__main__":
    main()
