"""Supervised fine-tuning with DDP and gradient accumulation: the `sft_nll` spec normalises
by the valid tokens of the whole global batch, so 2 ranks with 3 micro-batches each train
exactly as one process on the whole batch would.

    torchrun --nproc-per-node 2 examples/ddp_sft.py    # gloo on CPU
    python examples/ddp_sft.py                         # the same: spawns the 2 processes
    python examples/ddp_sft.py --fast                  # fewer steps (seconds)

The task: sequences of a small vocabulary where each token is the previous one plus a
fixed stride, padded to a common length; the labels of the padding are -100. Sequence
lengths differ, so the ranks and their micro-batches hold very different numbers of valid
tokens (the first micro-batch of rank 1 holds none at the first step). Each step, every rank
calls `loss_fn.begin_step` with the labels of its micro-batches (one all-reduce of the
token count), then runs and backpropagates each micro-batch (`no_sync` on all but the
last), and DDP averages the gradients. At the first step rank 0 also computes the
gradient of the whole batch in one process, with a copy of the model, and prints the
largest difference (docs/distributed.md).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import lossdsl

from _ranks import Config, join, launch, report_first_step  # examples/_ranks.py

VOCAB, LENGTH, STRIDE = 16, 12, 3
MICRO_BATCH_SIZES = (1, 4, 3)  # sequences per micro-batch, per rank: uneven on purpose
FULL, FAST = Config(steps=60), Config(steps=15)


class TinyLM(nn.Module):
    """Next-token logits from the current token and its position."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.token = nn.Embedding(VOCAB, hidden)
        self.position = nn.Embedding(LENGTH, hidden)
        self.out = nn.Sequential(nn.Tanh(), nn.Linear(hidden, VOCAB))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.out(self.token(tokens) + self.position(positions))


def global_batch(step: int, ranks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and labels of every sequence of one step (the same on every rank)."""
    g = torch.Generator().manual_seed(step)
    n = ranks * sum(MICRO_BATCH_SIZES)
    start = torch.randint(0, VOCAB, (n, 1), generator=g)
    sequence = (start + STRIDE * torch.arange(LENGTH + 1)) % VOCAB
    lengths = torch.randint(1, LENGTH + 1, (n,), generator=g)
    if step == 0:
        lengths[1] = 0  # rank 1's first micro-batch (one sequence): no valid token
    valid = torch.arange(LENGTH) < lengths.unsqueeze(1)
    labels = torch.where(valid, sequence[:, 1:], torch.full_like(sequence[:, 1:], -100))
    return sequence[:, :-1], labels


def micro_batches(step: int, rank: int, ranks: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's micro-batches: the global batch cut into ranks · len(sizes) chunks, chunk
    k · ranks + rank for micro-batch k."""
    tokens, labels = global_batch(step, ranks)
    sizes = [s for s in MICRO_BATCH_SIZES for _ in range(ranks)]
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    chunks = [(tokens[a:b], labels[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return chunks[rank::ranks]


def whole_batch_gradient(model: nn.Module, step: int, ranks: int) -> list[torch.Tensor]:
    tokens, labels = global_batch(step, ranks)
    loss = lossdsl.load("sft_nll")(logits=model(tokens), labels=labels).loss
    return list(torch.autograd.grad(loss, list(model.parameters())))


def train(rank: int, ranks: int, config: Config, store_dir: str | None) -> None:
    torch.set_num_threads(1)  # one core per rank
    torch.manual_seed(0)  # the same initial model on every rank
    model = TinyLM()
    # The first step's gradient of the whole batch in this process alone: computed before
    # the process group exists, so its global_sum sums over nothing.
    want = whole_batch_gradient(model, 0, ranks)
    join(rank, ranks, store_dir)
    ddp = DDP(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=3e-2)
    loss_fn = lossdsl.load("sft_nll")
    for step in range(config.steps):
        batches = micro_batches(step, rank, ranks)
        loss_fn.begin_step([{"labels": labels} for _, labels in batches])
        total = torch.zeros(())
        for k, (tokens, labels) in enumerate(batches):
            last = k == len(batches) - 1
            with contextlib.nullcontext() if last else ddp.no_sync():
                loss = loss_fn(logits=ddp(tokens), labels=labels).loss
                loss.backward()
            total += loss.detach()
        dist.all_reduce(total, op=dist.ReduceOp.AVG)  # the loss of the global batch
        if step == 0 and rank == 0:
            report_first_step(model, want)
        optimizer.step()
        optimizer.zero_grad()
        if rank == 0 and (step % 5 == 0 or step == config.steps - 1):
            print(f"step {step:3d}  loss {float(total):.4f}")


if __name__ == "__main__":
    launch(train, __doc__.split("\n\n")[0], FULL, FAST)
