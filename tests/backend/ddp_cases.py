"""One global batch, split over ranks and micro-batches as data-parallel training splits it.

tests/backend/test_distributed.py runs this file in 2 and 3 processes (gloo over the
loopback interface, a file store to meet); each rank takes its share of every case's global
batch (`shard`), runs its micro-batches through the standard spec (`begin_step` when there
are several), backpropagates each, averages the gradients over the ranks as DDP does and
writes what it got. The test compares that with the gradient of the whole batch in one
process (`whole_batch`).

The split is uneven on purpose: the micro-batches hold 1 to 3 sequences, the sequences
have ragged masks, and the first micro-batch of rank 1 has no valid token at all.

    python -m tests.backend.ddp_cases OUT_DIR RUN…    (RANK and WORLD_SIZE set; a RUN is the
                                                       number of micro-batches, `c` appended
                                                       for the compiled cases: 1 3 1c 3c)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tests.reference.rl_reference import AGG_MODES

T, V = 5, 7
DTYPE = torch.float32


@dataclass(frozen=True)
class Case:
    spec: str
    params: dict[str, Any] = field(default_factory=dict)
    chunk: int | None = None
    compiled: bool = False

    @property
    def name(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.params.items())
        spec = Path(self.spec).stem
        return f"{spec}[{extra}]" + (f"chunk={self.chunk}" if self.chunk else "")


EAGER_CASES = [
    *[Case("grpo", {"agg": mode, "kl_coef": 0.1}) for mode in AGG_MODES],
    Case("grpo", {"agg": "seq_mean_token_sum_norm", "loss_scale_factor": 3.0}),
    Case("dpo"),
    Case("sft_nll", {"label_smoothing": 0.1}),
    Case("sft_nll", {"label_smoothing": 0.1}, chunk=4),
]
# Compiled (aot_eager): every standard spec and static choice would compile a graph of its
# own (seconds each); ddp_all_modes.loss holds one term per mode, written with the same
# defs, and compiles once per run. A case weights one of its terms.
ALL_MODES = str(Path(__file__).with_name("ddp_all_modes.loss"))
MODE_TERMS = (*AGG_MODES, "dpo", "sft_nll")
COMPILED_CASES = [Case(ALL_MODES, {f"w_{term}": 1.0}, compiled=True) for term in MODE_TERMS]
GRAD_INPUTS = {
    "grpo": ("logp",),
    "dpo": ("policy_chosen_logps", "policy_rejected_logps"),
    "sft_nll": ("logits",),
    ALL_MODES: ("logp", "policy_chosen_logps", "policy_rejected_logps", "logits"),
}


def chunk_sizes(world: int, micro_batches: int) -> list[int]:
    """Sequences in each micro-batch (chunk c = micro-batch k of rank r, c = k·world + r)."""
    return [1 + (5 * c + 2) % 3 for c in range(world * micro_batches)]


def global_batch(spec: str, sizes: list[int], seed: int = 0) -> dict[str, torch.Tensor]:
    """The inputs of the whole batch; the chunk of rank 1's first micro-batch is all masked."""
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    lengths = torch.randint(0, T + 1, (n,), generator=g)
    empty = slice(sizes[0], sizes[0] + sizes[1])  # chunk 1: rank 1, micro-batch 0
    lengths[empty] = 0
    mask = torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)
    if spec == "grpo":
        logp = -(torch.rand(n, T, generator=g, dtype=DTYPE) * 3 + 0.01)
        return dict(
            logp=logp,
            old_logp=logp + 0.3 * torch.randn(n, T, generator=g, dtype=DTYPE).clamp(-1, 1),
            ref_logp=logp + 0.5 * torch.randn(n, T, generator=g, dtype=DTYPE).clamp(-1, 1),
            advantages=torch.randn(n, 1, generator=g, dtype=DTYPE),
            mask=mask,
        )
    if spec == "dpo":
        logps = [-torch.rand(n, generator=g, dtype=DTYPE) * 10 for _ in range(4)]
        names = ("policy_chosen", "policy_rejected", "reference_chosen", "reference_rejected")
        return {f"{name}_logps": value for name, value in zip(names, logps, strict=True)}
    if spec == "sft_nll":
        labels = torch.randint(0, V, (n, T), generator=g)
        return dict(
            logits=torch.randn(n, T, V, generator=g, dtype=DTYPE) * 2,
            labels=torch.where(mask, labels, torch.full_like(labels, -100)),
        )
    if spec == ALL_MODES:
        every = {**global_batch("grpo", sizes, seed), **global_batch("dpo", sizes, seed + 1)}
        every.update(global_batch("sft_nll", sizes, seed))
        del every["ref_logp"]
        return every
    raise ValueError(spec)


def rows_of(sizes: list[int], chunk: int) -> slice:
    start = sum(sizes[:chunk])
    return slice(start, start + sizes[chunk])


def load(case: Case, group: Any = None, backend: Any = "aot_eager") -> Any:
    import lossdsl

    return lossdsl.load(
        case.spec,
        params=dict(case.params),
        chunk=case.chunk,
        compile=case.compiled,
        backend=backend,
        group=group,
    )


def whole_batch(case: Case, world: int, micro_batches: int) -> dict[str, torch.Tensor]:
    """The loss of the whole global batch in one process, and its gradients."""
    batch = global_batch(case.spec, chunk_sizes(world, micro_batches))
    leaves = {k: v.clone().requires_grad_(k in GRAD_INPUTS[case.spec]) for k, v in batch.items()}
    out = load(replace(case, compiled=False))(**leaves)
    grads = torch.autograd.grad(out.loss, [leaves[k] for k in GRAD_INPUTS[case.spec]])
    return {"loss": out.loss.detach(), **dict(zip(GRAD_INPUTS[case.spec], grads, strict=True))}


def shard(
    case: Case, loss_fn: Any, rank: int, world: int, micro_batches: int
) -> dict[str, torch.Tensor]:
    """This rank's micro-batches, each backpropagated as under gradient accumulation; the
    summed losses and gradients averaged over the ranks, as DDP averages gradients."""
    import torch.distributed as dist

    sizes = chunk_sizes(world, micro_batches)
    batch = global_batch(case.spec, sizes)
    grad_names = GRAD_INPUTS[case.spec]
    params = {k: batch[k].clone().requires_grad_() for k in grad_names}
    calls: list[dict[str, Any]] = []
    for k in range(micro_batches):
        rows = rows_of(sizes, k * world + rank)
        calls.append({n: (params[n] if n in params else t)[rows] for n, t in batch.items()})
        if case.compiled:  # one module for every case: the case's weights for this call
            calls[-1]["params"] = {**{f"w_{term}": 0.0 for term in MODE_TERMS}, **case.params}
    if micro_batches > 1:
        loss_fn.begin_step(calls)
    total = torch.zeros((), dtype=DTYPE)
    for call in calls:
        out = loss_fn(**call)
        out.loss.backward()
        total += out.loss.detach()
    loss_fn.end_step()
    result = {"loss": total, **{n: params[n].grad for n in grad_names}}
    for value in result.values():
        dist.all_reduce(value)
        value /= world
    return result


EARLY = ("1", "loaded before init_process_group")


def cases_of(run: str) -> list[Case]:
    return COMPILED_CASES if run.endswith("c") else EAGER_CASES


def main(out_dir: Path, runs: list[str]) -> None:
    """Every run's results by (run, case name), saved by rank 0; compiled runs also record
    Dynamo's graph breaks and how many graphs the backend received."""
    import torch.distributed as dist
    from torch._dynamo.backends.registry import lookup_backend
    from torch._dynamo.utils import counters

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    # A module loaded before the process group exists sums over it once it does.
    early = load(EAGER_CASES[0])
    store = dist.FileStore(str(out_dir / "store"), world)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world)
    captures: list[int] = []

    def counting(graph_module: Any, example_inputs: Any) -> Any:
        captures.append(1)
        return lookup_backend("aot_eager")(graph_module, example_inputs)

    results: dict[Any, Any] = {}
    for run in runs:
        micro_batches = int(run.rstrip("c"))
        compiled = load(COMPILED_CASES[0], backend=counting) if run.endswith("c") else None
        for case in cases_of(run):
            loss_fn = compiled or load(case)
            results[run, case.name] = shard(case, loss_fn, rank, world, micro_batches)
    results[EARLY] = shard(EAGER_CASES[0], early, rank, world, 1)
    results["graph breaks"] = dict(counters["graph_break"])
    results["captures"] = len(captures)
    if rank == 0:
        torch.save(results, out_dir / "results.pt")
    # Every rank past its last collective before any tears down: a rank that destroys the
    # group while a peer is still in it can abort (gloo's threads, "terminate called").
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
