"""Data-parallel training with gradient accumulation gives the gradient of the whole batch.

LANGUAGE.md "Data parallel and micro-batches", docs/distributed.md: the standard specs
normalise by `global_sum`s of their counts and multiply by `world_size`, so that, summed
over the micro-batches of each rank and averaged over the ranks (what DDP and FSDP do with
gradients), the gradient is that of the loss over the whole global batch, however unevenly
the valid tokens fall. Each world size is one launch of `tests/backend/ddp_cases.py` in
that many processes (gloo over the loopback interface), with 1 micro-batch per rank (the
sums over ranks inside each call) and 3 (after `begin_step`: one all-reduce per step),
eager and compiled (aot_eager); this process computes the whole batch and compares, in
float32 to 1e-6.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.backend import ddp_cases
from tests.support import needs_one_compilation_across_sizes

ROOT = Path(__file__).resolve().parents[2]
RUNS = ("1", "3", "1c", "3c")
TOL = dict(rtol=1e-6, atol=1e-6)


def launch(world: int, out_dir: Path) -> dict:
    """Run ddp_cases.py in `world` processes; what rank 0 wrote."""
    env = {
        **os.environ,
        "WORLD_SIZE": str(world),
        "MASTER_ADDR": "127.0.0.1",
        "GLOO_SOCKET_IFNAME": "lo",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "tests.backend.ddp_cases", str(out_dir), *RUNS]
    ranks = [
        subprocess.Popen(
            command,
            env={**env, "RANK": str(rank)},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world)
    ]
    outputs = [rank.communicate(timeout=600)[0] for rank in ranks]
    failed = [
        (i, out)
        for i, (rank, out) in enumerate(zip(ranks, outputs, strict=True))
        if rank.returncode
    ]
    assert not failed, "\n".join(f"rank {i}:\n{out[-4000:]}" for i, out in failed)
    return torch.load(out_dir / "results.pt")


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n} ranks")
def ranks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    world = request.param
    return world, launch(world, tmp_path_factory.mktemp(f"ddp{world}"))


def expect_whole_batch(got: dict, case: ddp_cases.Case, world: int, micro_batches: int) -> None:
    want = ddp_cases.whole_batch(case, world, micro_batches)
    assert set(got) == set(want)
    for key, value in want.items():
        torch.testing.assert_close(
            got[key], value, **TOL, msg=lambda m, key=key: f"{case.name} {key}: {m}"
        )


@pytest.mark.parametrize("micro_batches", [1, 3])
def test_ranks_and_micro_batches_add_up_to_the_whole_batch(ranks, micro_batches):
    """Every aggregation mode of grpo, DPO, SFT NLL and SFT NLL in slices: loss and
    gradients summed over micro-batches and averaged over ranks equal the whole batch's."""
    world, results = ranks
    for case in ddp_cases.EAGER_CASES:
        expect_whole_batch(results[str(micro_batches), case.name], case, world, micro_batches)


@pytest.mark.parametrize("micro_batches", [1, 3])
def test_compiled_ranks_and_micro_batches_add_up_to_the_whole_batch(ranks, micro_batches):
    """The same through torch.compile (ddp_all_modes.loss: every mode in one graph): the
    all-reduce inside the graph (one micro-batch), or the step's totals given to it (three)."""
    world, results = ranks
    for case in ddp_cases.cases_of(f"{micro_batches}c"):
        expect_whole_batch(results[f"{micro_batches}c", case.name], case, world, micro_batches)


@needs_one_compilation_across_sizes
def test_the_compiled_graphs_have_no_graph_break(ranks):
    """The functional all-reduce is traced into the graph: Dynamo breaks nowhere, and the
    backend receives two graphs in all, the one of each run (per call, stepped), whatever
    the weights of the calls."""
    _, results = ranks
    assert results["graph breaks"] == {}
    assert results["captures"] == 2


def test_a_module_loaded_before_the_process_group_sums_over_it(ranks):
    world, results = ranks
    case = ddp_cases.EAGER_CASES[0]
    expect_whole_batch(results[ddp_cases.EARLY], case, world, 1)


@pytest.mark.parametrize("world", [2, 3])
def test_the_split_is_uneven_and_one_micro_batch_is_empty(world):
    """What the launches run on: micro-batches of 1 to 3 sequences, ragged token counts,
    and rank 1's first micro-batch without a valid token."""
    sizes = ddp_cases.chunk_sizes(world, 3)
    assert len(set(sizes)) > 1
    batch = ddp_cases.global_batch("grpo", sizes)
    tokens = [int(batch["mask"][ddp_cases.rows_of(sizes, c)].sum()) for c in range(len(sizes))]
    assert tokens[1] == 0 and len(set(tokens)) > 2


def test_micro_batch_means_averaged_are_not_the_whole_batch_mean():
    """Why: a token mean per micro-batch, averaged, weighs each micro-batch equally, so its
    gradient differs from the whole batch's (the check above would catch it)."""
    world, micro_batches = 2, 3
    sizes = ddp_cases.chunk_sizes(world, micro_batches)
    batch = ddp_cases.global_batch("grpo", sizes)
    local = torch.zeros(())
    for chunk in range(len(sizes)):
        rows = ddp_cases.rows_of(sizes, chunk)
        mask, logp = batch["mask"][rows], batch["logp"][rows]
        local += (logp * mask).sum() / mask.sum().clamp(min=1) / world
    whole = (batch["logp"] * batch["mask"]).sum() / batch["mask"].sum()
    assert abs(float(local - whole)) > 0.05
