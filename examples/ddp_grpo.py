"""GRPO with DDP and gradient accumulation: the `grpo` spec's token mean runs over the valid
tokens of the whole global batch, so 2 ranks with 2 micro-batches each take exactly the
step one process would take on the whole batch.

    torchrun --nproc-per-node 2 examples/ddp_grpo.py   # gloo on CPU
    python examples/ddp_grpo.py                        # the same: spawns the 2 processes
    python examples/ddp_grpo.py --fast                 # fewer steps (seconds)

The task: a prompt names a target token; the policy writes a completion whose length the
environment decides (1 to 10 tokens, some completions end at once with none); the reward
is the share of the completion's tokens equal to the target. For each prompt a group of
completions is sampled, and the advantages are the rewards normalised within the group.
Each rank holds its share of the prompts in micro-batches of 1 and 3 prompts, so the
valid tokens per rank and per micro-batch differ widely. Every step each rank calls
`loss_fn.begin_step` with the masks of its micro-batches (one all-reduce of the token
count), backpropagates each micro-batch (`no_sync` on all but the last) and DDP averages
the gradients. At the first step rank 0 also computes the gradient of the whole batch in
one process and prints the largest difference (docs/distributed.md).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import lossdsl

from _ranks import Config, join, launch, report_first_step  # examples/_ranks.py

VOCAB, LENGTH, GROUP = 8, 10, 4
PROMPTS_PER_MICRO_BATCH = (1, 3)  # per rank: uneven on purpose
GRPO_PARAMS = {"agg": "token_mean", "kl_coef": 0.0}
FULL, FAST = Config(steps=40), Config(steps=12)


class Policy(nn.Module):
    """Logits of each completion position from the prompt's target and the position."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.prompt = nn.Embedding(VOCAB, hidden)
        self.position = nn.Embedding(LENGTH, hidden)
        self.out = nn.Sequential(nn.Tanh(), nn.Linear(hidden, VOCAB))

    def forward(self, targets: torch.Tensor) -> torch.Tensor:  # [B] -> [B, LENGTH, VOCAB]
        positions = torch.arange(LENGTH, device=targets.device)
        return self.out(self.prompt(targets)[:, None, :] + self.position(positions))


def rollouts(policy: nn.Module, step: int, ranks: int) -> dict[str, torch.Tensor]:
    """One step's global batch: GROUP completions per prompt, sampled with a generator seeded
    by the step, so every rank (whose policies are equal) draws the same batch."""
    g = torch.Generator().manual_seed(step)
    prompts = ranks * sum(PROMPTS_PER_MICRO_BATCH)
    targets = torch.randint(0, VOCAB, (prompts,), generator=g).repeat_interleave(GROUP)
    with torch.no_grad():
        logits = policy(targets)
        actions = torch.multinomial(logits.softmax(-1).reshape(-1, VOCAB), 1, generator=g).reshape(
            -1, LENGTH
        )
        old_logp = logits.log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    lengths = torch.randint(0, LENGTH + 1, (len(targets),), generator=g)
    mask = torch.arange(LENGTH) < lengths.unsqueeze(1)
    hits = ((actions == targets.unsqueeze(1)) & mask).sum(1)
    rewards = hits / lengths.clamp(min=1)
    grouped = rewards.reshape(-1, GROUP)
    advantages = (grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-6)
    return dict(
        targets=targets,
        actions=actions,
        old_logp=old_logp,
        advantages=advantages.reshape(-1, 1),
        mask=mask,
        rewards=rewards,
    )


def micro_batches(batch: dict[str, torch.Tensor], rank: int, ranks: int) -> list[dict]:
    """This rank's micro-batches: chunk k · ranks + rank of the global batch for micro-batch
    k, whole groups each."""
    sizes = [GROUP * p for p in PROMPTS_PER_MICRO_BATCH for _ in range(ranks)]
    bounds = torch.tensor([0, *sizes]).cumsum(0).tolist()
    chunks = [
        {name: value[a:b] for name, value in batch.items()}
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    return chunks[rank::ranks]


def loss_of(loss_fn: object, policy: nn.Module, part: dict[str, torch.Tensor]) -> torch.Tensor:
    inputs = {k: v for k, v in part.items() if k not in ("targets", "rewards")}
    return loss_fn(logits=policy(part["targets"]), **inputs).loss  # type: ignore[operator]


def train(rank: int, ranks: int, config: Config, store_dir: str | None) -> None:
    torch.set_num_threads(1)  # one core per rank
    torch.manual_seed(0)  # the same initial policy on every rank
    policy = Policy()
    # The first step's gradient of the whole batch in this process alone: computed before
    # the process group exists, so its global_sum sums over nothing.
    first = rollouts(policy, 0, ranks)
    whole = loss_of(lossdsl.load("grpo", params=GRPO_PARAMS), policy, first)
    want = torch.autograd.grad(whole, list(policy.parameters()))
    join(rank, ranks, store_dir)
    ddp = DDP(policy)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=5e-2)
    loss_fn = lossdsl.load("grpo", params=GRPO_PARAMS)
    for step in range(config.steps):
        batch = rollouts(policy, step, ranks)
        parts = micro_batches(batch, rank, ranks)
        loss_fn.begin_step([{"mask": part["mask"]} for part in parts])
        for k, part in enumerate(parts):
            with contextlib.nullcontext() if k == len(parts) - 1 else ddp.no_sync():
                loss_of(loss_fn, ddp, part).backward()
        if step == 0 and rank == 0:
            report_first_step(policy, want)
        optimizer.step()
        optimizer.zero_grad()
        if rank == 0 and (step % 4 == 0 or step == config.steps - 1):
            print(f"step {step:3d}  mean reward {float(batch['rewards'].mean()):.3f}")


if __name__ == "__main__":
    launch(train, __doc__.split("\n\n")[0], FULL, FAST)
