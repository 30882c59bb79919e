"""`global_sum` and `world_size` in the graph, and the totals `begin_step` gives them.

A graph is lowered for one data-parallel group, fixed when it is built (`Collectives`):

- with more than one rank, `global_sum(x)` is torch.distributed's functional all-reduce of
  `x` over the group, a node of the graph (`_c10d_functional.all_reduce` and `wait_tensor`):
  `torch.compile` traces it without a graph break and the call never waits on the host;
- with one rank, or none, it is `x` itself and `world_size` is 1: the graph is the one a
  spec gets without torch.distributed, node for node;
- a standalone module (`lossdsl compile -o`) has no group when it is written: its graph calls
  the runtime's `global_sum` and `world_size`, which look at the default group at each call.

`begin_step` (backend/module.py) runs a small graph of just the `global_sum` arguments on
each micro-batch of an optimizer step, adds them up, and all-reduces the sums once; the
calls that follow run a *stepped* graph, whose `global_sum` nodes are placeholders that
receive those totals (`_Lowering.bind_spec_inputs`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx

from lossdsl.backend.lowering import LOWERINGS, Value, _Lowering
from lossdsl.ir import Node, SpecIR
from lossdsl.runtime import core


@dataclass(frozen=True)
class Collectives:
    """The data-parallel group a graph sums over, as the lowering needs it."""

    group_name: str | None = None  # the registered name of a group of 2 or more ranks
    size: int = 1
    at_run_time: bool = False  # look the default group up at each call (standalone modules)


def resolve(group: Any = None) -> Collectives:
    """The group a module's graph sums over now: `group`, else the default group; one rank
    (the identity) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if group is None:
        if not (dist.is_available() and dist.is_initialized()):
            return Collectives()
        group = dist.group.WORLD
    size = dist.get_world_size(group)
    return Collectives(group.group_name if size > 1 else None, size)


def global_sums(ir: SpecIR) -> tuple[int, ...]:
    """The `global_sum` nodes of a spec, in the order of the IR (the order of the totals)."""
    return tuple(node.id for node in ir.nodes if node.op == "global_sum")


def totals_signature(ir: SpecIR) -> tuple[str, ...]:
    """What each `global_sum` of a spec sums, spelled out from the inputs and params up: two
    variants (other derived inputs computed) whose signatures agree take the same totals."""
    spelled: dict[int, str] = {}
    for node in ir.nodes:  # SSA order: the arguments are spelled first
        named = node.name if node.op in ("input", "param") else ""
        attrs = sorted((k, repr(v)) for k, v in node.attrs.items())
        args = ",".join(spelled[a] for a in node.args)
        text = f"{node.op}[{named}]{attrs}{node.type.kind}{tuple(node.type.dims)}({args})"
        spelled[node.id] = hashlib.sha256(text.encode()).hexdigest()
    return tuple(spelled[g] for g in global_sums(ir))


def read_inputs(graph_module: fx.GraphModule, ir: SpecIR) -> frozenset[str]:
    """The inputs of the spec that a graph of it reads (its placeholders with users)."""
    names = {spec.name for spec in ir.inputs}
    return frozenset(
        str(node.target)
        for node in graph_module.graph.nodes
        if node.op == "placeholder" and node.users and str(node.target) in names
    )


def all_reduce(totals: Sequence[torch.Tensor], group: Any = None) -> list[torch.Tensor]:
    """Every total summed over the ranks in one collective (a flat buffer), each in its
    shape again; the totals themselves with one rank."""
    import torch.distributed as dist

    if resolve(group).size == 1 or not totals:
        return list(totals)
    flat = torch.cat([t.reshape(-1) for t in totals])
    dist.all_reduce(flat, group=group)
    out, at = [], 0
    for t in totals:
        out.append(flat[at : at + t.numel()].reshape(t.shape))
        at += t.numel()
    return out


class _ArgumentsLowering(_Lowering):
    """The spec's inputs, step and params in; the argument of every `global_sum` out."""

    def build(self) -> fx.GraphModule:
        self.bind_spec_inputs()
        sums = global_sums(self.ir)
        return self.finish(
            [
                self.tensor(self.floating(self.lower(self.ir.node(g).args[0]), self.arg_kind(g)))
                for g in sums
            ]
        )

    def arg_kind(self, node_id: int) -> str:
        return self.ir.node(self.ir.node(node_id).args[0]).type.kind


def lower_arguments(ir: SpecIR) -> fx.GraphModule:
    """The graph `begin_step` runs on each micro-batch: `(*inputs, step[, params])` to the
    arguments of the spec's `global_sum`s, in order, in the compute dtype."""
    return _ArgumentsLowering(ir).build()


# ---- lowerings ------------------------------------------------------------------------------


def _global_sum(low: _Lowering, node: Node, args: list[Value]) -> Value:
    x = low.tensor(low.floating(args[0], low.kind(node.args[0])))
    collectives = low.collectives
    if collectives.at_run_time:
        return fx.Proxy(low.graph.call_function(core.global_sum, (x.node,)), low.tracer)
    if collectives.group_name is None:
        return x
    functional = torch.ops._c10d_functional
    return functional.wait_tensor(functional.all_reduce(x, "sum", collectives.group_name))


def _world_size(low: _Lowering, node: Node, args: list[Value]) -> Value:
    collectives = low.collectives
    if collectives.at_run_time:  # one lookup per call, however often the spec reads it
        if "_world_size" not in low.__dict__:
            ranks = fx.Proxy(low.graph.call_function(core.world_size, ()), low.tracer)
            low.__dict__["_world_size"] = low.step * 0 + ranks
        return low.__dict__["_world_size"]
    return float(collectives.size)


LOWERINGS["global_sum"] = _global_sum
LOWERINGS["world_size"] = _world_size
