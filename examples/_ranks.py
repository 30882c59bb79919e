"""The two gloo ranks of the DDP examples: started by torchrun, or spawned by `launch`."""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@dataclass(frozen=True)
class Config:
    steps: int
    ranks: int = 2


Train = Callable[[int, int, Config, "str | None"], None]  # rank, ranks, config, store folder


def join(rank: int, ranks: int, store_dir: str | None) -> None:
    """This process's place in the group: torchrun's environment, or a file store."""
    if store_dir is None:  # torchrun: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT are set
        dist.init_process_group("gloo")
    else:
        store = dist.FileStore(os.path.join(store_dir, "store"), ranks)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=ranks)


def report_first_step(model: torch.nn.Module, want: list[torch.Tensor]) -> None:
    """How far the gradient DDP left in `model` is from `want`, the whole batch's gradient
    computed in one process."""
    got = [p.grad for p in model.parameters()]
    difference = max(float((a - b).abs().max()) for a, b in zip(got, want, strict=True))
    print(f"step 0: largest difference to the whole batch's gradient {difference:.1e}")


def run_rank(train: Train, rank: int, ranks: int, config: Config, store_dir: str | None) -> None:
    """One rank: `train` (which joins the group when it is ready to), then the group torn
    down once everything `train` made is freed. A DDP module still alive at teardown keeps
    gloo's worker threads, and the rank aborts when the interpreter exits ("terminate
    called without an active exception"); so does a rank that destroys the group while a
    peer is still in a collective, hence the barrier."""
    train(rank, ranks, config, store_dir)
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()


def launch(train: Train, description: str, full: Config, fast: Config) -> None:
    """`--fast` picks `fast`; under torchrun this process is one rank, else it spawns them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fast", action="store_true", help="fewer steps (seconds)")
    config = fast if parser.parse_args().fast else full
    if "RANK" in os.environ:
        run_rank(train, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), config, None)
        return
    with tempfile.TemporaryDirectory() as store_dir:
        mp.spawn(_spawned, args=(train, config, store_dir), nprocs=config.ranks)


def _spawned(rank: int, train: Train, config: Config, store_dir: str) -> None:
    run_rank(train, rank, config.ranks, config, store_dir)
