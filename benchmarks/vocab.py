"""Vocabulary-scale losses: peak memory and time of forward + backward from hidden states and a
linear head, lossdsl sliced and unsliced against the fused-linear losses people use.

    python benchmarks/vocab.py                  # this machine's sizes (N=4096, H=1024, V=32768)
    python benchmarks/vocab.py --dtype bf16     # bf16 hidden states and head
    python benchmarks/vocab.py --llm --device cuda   # N=16384, H=4096, V=128256, bf16 (a GPU)
    python benchmarks/vocab.py --quick          # tiny sizes: a smoke test of every variant
    python benchmarks/vocab.py --spread RUN1.json RUN2.json   # min-max over runs, per figure

Per case, every variant runs forward + backward on the same inputs: a few warm-up calls (the
first compiles), then `--rounds` interleaved rounds, each variant going first in turn; the
table shows the median and the spread (min-max) of the rounds and ratios to the anchors
measured in the same rounds. Peak memory is the growth during one forward + backward after
warm-up, minus the bytes of the gradients of the caller's tensors (which the caller keeps):
"extra MiB" is what the loss itself needs on top of its inputs and their gradients. On the
CPU it is the growth of the peak RSS (VmHWM) in a fresh subprocess per variant (the
resident set remembers whatever the process freed before); on CUDA, the growth of the
allocator's peak, measured in the timing process.

Anchors: torch's `F.linear_cross_entropy` (the reference path, and chunked with
`LinearCrossEntropyOptions()`), Liger Kernel's `LigerFusedLinearCrossEntropyLoss` (a Triton
kernel: GPU only), `LigerFusedLinearGRPOLoss` and `LigerFusedLinearDPOLoss` (torch code
compiled per chunk: they run on the CPU). Liger is optional (`pip install -e ".[bench]"`); a
missing anchor is reported as such, never left out silently.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

import lossdsl

warnings.simplefilter("ignore", lossdsl.LossSpecWarning)

IGNORE = -100
Inputs = dict[str, Tensor]
Variant = Callable[[Inputs], Tensor]  # inputs -> loss


@dataclass
class Sizes:
    batch: int  # sequences (B) or, for cross entropy, rows N = batch * seq
    seq: int
    hidden: int
    vocab: int


SIZES = {
    "cpu": Sizes(batch=8, seq=512, hidden=1024, vocab=32768),  # N = 4096 rows
    "llm": Sizes(batch=16, seq=1024, hidden=4096, vocab=128256),  # N = 16384 rows
    "quick": Sizes(batch=2, seq=16, hidden=32, vocab=128),
}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


# ---- inputs -------------------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_inputs(case: str, sizes: Sizes, dtype: torch.dtype, device: str) -> Inputs:
    g = _generator(0)
    B, T, H, V = sizes.batch, sizes.seq, sizes.hidden, sizes.vocab

    def hidden(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(device, dtype).requires_grad_()

    head = (torch.randn(V, H, generator=g) * H**-0.5).to(device, dtype).requires_grad_()
    tokens = torch.randint(0, V, (B, T), generator=g).to(device)
    mask = torch.arange(T)[None, :] < torch.randint(T // 2, T + 1, (B, 1), generator=g)
    mask = mask.to(device)
    if case == "cross_entropy":
        target = torch.where(mask, tokens, IGNORE).reshape(-1)
        return {"hidden": hidden(B * T, H), "head": head, "target": target}
    if case == "grpo":
        states = hidden(B, T, H)
        # old and reference log-probs near the policy's own, as in training
        logp = _token_logp(states.detach(), head.detach(), tokens)
        return {
            "hidden": states,
            "head": head,
            "actions": tokens,
            "old_logp": logp + 0.05 * torch.randn(B, T, generator=g).to(device),
            "ref_logp": logp + 0.05 * torch.randn(B, T, generator=g).to(device),
            "advantages": torch.randn(B, 1, generator=g).to(device),
            "mask": mask,
        }
    if case == "dpo":
        half = B // 2
        chosen, rejected = hidden(half, T, H), hidden(half, T, H)
        nudge = 0.01 * torch.randn(half, T, H, generator=g).to(device, dtype)
        return {
            "chosen_hidden": chosen,
            "rejected_hidden": rejected,
            "head": head,
            "chosen_labels": torch.where(mask[:half], tokens[:half], IGNORE),
            "rejected_labels": torch.where(mask[half:], tokens[half:], IGNORE),
            "ref_chosen_hidden": chosen.detach() + nudge,
            "ref_rejected_hidden": rejected.detach() - nudge,
            "ref_head": head.detach().clone(),
        }
    raise KeyError(case)


@torch.no_grad()
def _token_logp(hidden: Tensor, head: Tensor, tokens: Tensor) -> Tensor:
    """log-softmax(hidden · headᵀ) at the tokens, a sequence at a time (bounded memory)."""
    rows = []
    for b in range(hidden.shape[0]):
        logits = (hidden[b] @ head.T).float()
        rows.append(torch.log_softmax(logits, -1).gather(-1, tokens[b, :, None]).squeeze(-1))
    return torch.stack(rows)


def grad_tensors(inputs: Inputs) -> list[Tensor]:
    return [t for t in inputs.values() if t.requires_grad]


# ---- variants -----------------------------------------------------------------------------


def lossdsl_variant(case: str, **options) -> Variant:
    fn = lossdsl.load(case, **options)

    def run(inputs: Inputs) -> Tensor:
        return fn(**inputs).loss

    return run


def torch_linear_ce(chunked: bool) -> Variant:
    options = torch.nn.LinearCrossEntropyOptions() if chunked else None

    def run(inputs: Inputs) -> Tensor:
        return F.linear_cross_entropy(
            inputs["hidden"],
            inputs["head"],
            inputs["target"],
            ignore_index=IGNORE,
            options=options,
        )

    return run


def liger_ce() -> Variant:
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    loss = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE)
    return lambda inputs: loss(inputs["head"], inputs["hidden"], inputs["target"])


def liger_grpo() -> Variant:
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

    # loss_type "grpo": per-sequence token mean, then the mean over sequences; k3 KL with
    # beta = 0.04; clip 0.2 both ways: the standard `grpo` spec's defaults.
    loss = LigerFusedLinearGRPOLoss(
        beta=0.04, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.2, use_ref_model=True
    )

    def run(inputs: Inputs) -> Tensor:
        out = loss(
            inputs["hidden"],
            inputs["head"],
            inputs["actions"],
            inputs["mask"].long(),
            inputs["advantages"].reshape(-1),
            ref_per_token_logps=inputs["ref_logp"],
            old_per_token_logps=inputs["old_logp"],
        )
        return out[0] if isinstance(out, tuple) else out

    return run


def liger_dpo() -> Variant:
    from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

    # sigmoid DPO, beta = 0.1, summed log-probs, a reference model: the `dpo` spec's defaults
    loss = LigerFusedLinearDPOLoss(beta=0.1, ignore_index=IGNORE, use_ref_model=True)

    def run(inputs: Inputs) -> Tensor:
        hidden = torch.cat([inputs["chosen_hidden"], inputs["rejected_hidden"]])
        target = torch.cat([inputs["chosen_labels"], inputs["rejected_labels"]])
        reference = torch.cat([inputs["ref_chosen_hidden"], inputs["ref_rejected_hidden"]])
        out = loss(
            inputs["head"], hidden, target, ref_input=reference, ref_weight=inputs["ref_head"]
        )
        return out[0] if isinstance(out, tuple) else out

    return run


def variants(
    case: str, sizes: Sizes, chunks: Sequence[int] = (), backend: str = "inductor"
) -> dict[str, Callable[[], Variant]]:
    """Name -> a maker (called once per process: construction may compile or fail); `chunks`:
    rows per slice to time beside `chunk="auto"`, eager (no compilation per size: the slice
    size mostly changes the head's products, which run outside the compiled graphs)."""
    ours = {
        "lossdsl sliced compiled": lambda: lossdsl_variant(
            case, chunk="auto", compile=True, backend=backend
        ),
        "lossdsl sliced eager": lambda: lossdsl_variant(case, chunk="auto"),
        "lossdsl unsliced compiled": lambda: lossdsl_variant(case, compile=True, backend=backend),
    }
    for rows in chunks:
        ours[f"lossdsl sliced eager, chunk={rows}"] = lambda rows=rows: lossdsl_variant(
            case, chunk=rows
        )
    if case == "dpo":
        # Slices of whole sequences: DPO's log-sigmoid of sequence sums in one pass, at the
        # cost of a sequence's logits (policy and reference, chosen and rejected) per slice.
        ours["lossdsl sliced compiled, whole sequences"] = lambda: lossdsl_variant(
            case, chunk=sizes.seq, compile=True, backend=backend
        )
    anchors: dict[str, Callable[[], Variant]] = {
        "cross_entropy": {
            "F.linear_cross_entropy": lambda: torch_linear_ce(chunked=False),
            "F.linear_cross_entropy chunked": lambda: torch_linear_ce(chunked=True),
            "Liger fused linear CE": liger_ce,
        },
        "grpo": {"Liger fused linear GRPO": liger_grpo},
        "dpo": {"Liger fused linear DPO": liger_dpo},
    }[case]
    return {**ours, **anchors}


# ---- measuring ----------------------------------------------------------------------------


@dataclass
class Row:
    variant: str
    status: str = "ok"
    loss: float | None = None
    samples_s: list[float] = field(default_factory=list)
    median_s: float | None = None
    extra_mib: float | None = None
    memory_method: str = ""


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def forward_backward(fn: Variant, inputs: Inputs) -> float:
    for t in grad_tensors(inputs):
        t.grad = None
    loss = fn(inputs)
    loss.backward()
    return float(loss.detach())


def time_case(case: str, settings: argparse.Namespace) -> list[Row]:
    sizes = SIZES[settings.size]
    inputs = make_inputs(case, sizes, DTYPES[settings.dtype], settings.device)
    rows: dict[str, Row] = {}
    ready: dict[str, Variant] = {}
    for name, make in variants(case, sizes, settings.chunk, settings.backend).items():
        print(f"  warming up {case} / {name}", file=sys.stderr, flush=True)
        try:
            fn = make()
            for _ in range(settings.warmup):
                loss = forward_backward(fn, inputs)
        except Exception as error:  # an anchor that cannot run here is reported, not hidden
            rows[name] = Row(
                name,
                status=f"unavailable: {type(error).__name__}: {str(error).splitlines()[0][:120]}",
            )
            continue
        rows[name] = Row(name, loss=loss)
        ready[name] = fn
    order = list(ready)
    for round_index in range(settings.rounds):
        shift = round_index % max(len(order), 1)
        for name in order[shift:] + order[:shift]:
            synchronize(settings.device)
            start = time.perf_counter()
            forward_backward(ready[name], inputs)
            synchronize(settings.device)
            rows[name].samples_s.append(time.perf_counter() - start)
    for row in rows.values():
        if row.samples_s:
            row.median_s = statistics.median(row.samples_s)
    if settings.memory:
        for name in ready:
            if settings.device == "cuda":  # the allocator's own peak: exact in this process
                record_memory(rows[name], peak_growth(ready[name], inputs, settings.device))
            else:
                measure_in_subprocess(case, rows[name], settings)
    return list(rows.values())


def peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def measure_memory(case: str, variant: str, settings: argparse.Namespace) -> dict:
    """In a fresh process (the CPU's resident set counts everything the process ever freed
    to glibc): the peak growth of one forward + backward after warm-up."""
    inputs = make_inputs(case, SIZES[settings.size], DTYPES[settings.dtype], settings.device)
    fn = variants(case, SIZES[settings.size], settings.chunk, settings.backend)[variant]()
    for _ in range(settings.warmup):
        forward_backward(fn, inputs)
    return peak_growth(fn, inputs, settings.device)


def peak_growth(fn: Variant, inputs: Inputs, device: str) -> dict:
    """The peak growth of one forward + backward of a warmed-up variant, less the gradients
    of the caller's tensors."""
    grads = sum(t.numel() * t.element_size() for t in grad_tensors(inputs))
    for t in grad_tensors(inputs):
        t.grad = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        forward_backward(fn, inputs)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        return {"extra_bytes": peak - grads, "method": "cuda allocator peak"}
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = rss_kib()
    forward_backward(fn, inputs)
    return {"extra_bytes": (peak_kib() - before) * 1024 - grads, "method": "VmHWM"}


def measure_in_subprocess(case: str, row: Row, settings: argparse.Namespace) -> None:
    command = [
        sys.executable,
        __file__,
        "--measure-memory",
        case,
        row.variant,
        "--size",
        settings.size,
        "--dtype",
        settings.dtype,
        "--device",
        settings.device,
        "--warmup",
        str(settings.warmup),
        *(f"--chunk={rows}" for rows in settings.chunk),
        f"--backend={settings.backend}",
    ]
    print(f"  memory {case} / {row.variant}", file=sys.stderr, flush=True)
    # glibc keeps freed blocks for reuse, so a peak made of blocks freed during warm-up would
    # not raise the resident set: blocks of 64 KiB and more are mapped and unmapped instead.
    env = os.environ | {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600, env=env)
    if done.returncode != 0:
        row.memory_method = f"failed: {done.stderr.strip().splitlines()[-1:]}"
        return
    record_memory(row, json.loads(done.stdout.strip().splitlines()[-1]))


def record_memory(row: Row, result: dict) -> None:
    row.extra_mib = result["extra_bytes"] / 2**20
    row.memory_method = result["method"]


# ---- report -------------------------------------------------------------------------------


def print_table(case: str, rows: list[Row]) -> None:
    ok = [r for r in rows if r.median_s is not None]
    fastest_anchor = min(
        (r.median_s for r in ok if not r.variant.startswith("lossdsl") and r.median_s),
        default=None,
    )
    unsliced = next((r.median_s for r in ok if r.variant == "lossdsl unsliced compiled"), None)
    print(f"\n{case}")
    print(
        f"{'variant':41} {'median s':>9} {'spread s':>14} {'x anchor':>9} {'x unsliced':>10} "
        f"{'extra MiB':>10} {'loss':>12}"
    )
    for row in rows:
        if row.median_s is None:
            print(f"{row.variant:41} {row.status}")
            continue
        spread = f"{min(row.samples_s):.3f}-{max(row.samples_s):.3f}"
        vs_anchor = f"{row.median_s / fastest_anchor:.2f}" if fastest_anchor else "-"
        vs_unsliced = f"{row.median_s / unsliced:.2f}" if unsliced else "-"
        memory = f"{row.extra_mib:.0f}" if row.extra_mib is not None else row.memory_method or "-"
        print(
            f"{row.variant:41} {row.median_s:9.3f} {spread:>14} {vs_anchor:>9} "
            f"{vs_unsliced:>10} {memory:>10} {row.loss:12.6f}"
        )


def ratios(rows: list[dict]) -> dict[str, tuple[float | None, float | None]]:
    """Per variant: its median over the fastest anchor's and over unsliced compiled lossdsl's,
    both from the same run."""
    medians = {r["variant"]: r["median_s"] for r in rows if r["median_s"]}
    anchors = [m for name, m in medians.items() if not name.startswith("lossdsl")]
    fastest, unsliced = min(anchors, default=None), medians.get("lossdsl unsliced compiled")
    return {
        name: (m / fastest if fastest else None, m / unsliced if unsliced else None)
        for name, m in medians.items()
    }


def spread_tables(paths: list[Path]) -> None:
    """The min-max over several runs' JSON of each figure, as docs/performance.md shows it."""
    from spread import spread  # benchmarks/spread.py, beside this file

    runs = [json.loads(path.read_text()) for path in paths]
    for run in runs:
        print(f"load average: start {run.get('load_before', '?')}, end {run.get('load_after')}")
    for case in runs[0]["cases"]:
        print(f"\n{case}\n")
        print("| variant | median s | x fastest anchor | x unsliced compiled | extra MiB |")
        print("|---|---|---|---|---|")
        per_run = [{r["variant"]: r for r in run["cases"][case]} for run in runs]
        run_ratios = [ratios(run["cases"][case]) for run in runs]
        for variant, first in per_run[0].items():
            rows = [run.get(variant, {}) for run in per_run]
            if not first.get("median_s"):
                print(f"| {variant} | {first['status']} | | | |")
                continue
            cells = [
                spread([r.get("median_s") for r in rows], 2),
                spread([rr.get(variant, (None, None))[0] for rr in run_ratios], 2),
                spread([rr.get(variant, (None, None))[1] for rr in run_ratios], 2),
                spread([r.get("extra_mib") for r in rows], 0),
            ]
            print(f"| {variant} | " + " | ".join(cells) + " |")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--case", action="append", choices=["cross_entropy", "grpo", "dpo"])
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--llm", action="store_true", help="LLM sizes in bf16 (for a GPU)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--backend", default="inductor", help="torch.compile's backend for lossdsl compiled"
    )
    parser.add_argument(
        "--chunk",
        type=int,
        action="append",
        default=[],
        metavar="ROWS",
        help='also time lossdsl sliced eager at this many rows per slice (beside "auto")',
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--no-memory", dest="memory", action="store_false")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/vocab.json"))
    parser.add_argument(
        "--spread", nargs="+", type=Path, metavar="RUN.json", help="tables of several runs"
    )
    parser.add_argument(
        "--measure-memory", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.llm:
        args.size, args.dtype = "llm", "bf16"
    if args.quick:
        args.size, args.rounds = "quick", 2
    return args


def main() -> None:
    settings = parse_args()
    if settings.measure_memory:
        print(json.dumps(measure_memory(*settings.measure_memory, settings)))
        return
    if settings.spread:
        spread_tables(settings.spread)
        return
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, device {settings.device}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; sizes {settings.size} "
        f"{asdict(SIZES[settings.size])}, {settings.dtype}, {settings.rounds} rounds"
    )
    report = {
        "settings": vars(settings) | {"json": str(settings.json)},
        "cases": {},
        "load_before": load,
    }
    for case in settings.case or ["cross_entropy", "grpo", "dpo"]:
        rows = time_case(case, settings)
        print_table(case, rows)
        report["cases"][case] = [asdict(r) for r in rows]
    report["load_after"] = os.getloadavg()
    settings.json.parent.mkdir(parents=True, exist_ok=True)
    settings.json.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {settings.json}")


if __name__ == "__main__":
    main()
