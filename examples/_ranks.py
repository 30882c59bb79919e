"""The two gloo ranks of the DDP examples: started by torchrun, or spawned by `launch`."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

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


def leave() -> None:
    # Every rank past its last collective before any tears down: a rank that destroys the
    # group while a peer is still in it can abort (gloo's threads, "terminate called").
    dist.barrier()
    dist.destroy_process_group()


def launch(train: Train, description: str, full: Config, fast: Config) -> None:
    """`--fast` picks `fast`; under torchrun this process is one rank, else it spawns them."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fast", action="store_true", help="fewer steps (seconds)")
    config = fast if parser.parse_args().fast else full
    if "RANK" in os.environ:
        train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), config, None)
        return
    with tempfile.TemporaryDirectory() as store_dir:
        mp.spawn(train, args=(config.ranks, config, store_dir), nprocs=config.ranks)
