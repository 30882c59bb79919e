"""Rebuilding the node table: the helper passes share when they drop or replace nodes."""

from __future__ import annotations

from lossdsl.ir import Node, SpecIR


def renumbered(ir: SpecIR, nodes: list[Node], remap: dict[int, int]) -> SpecIR:
    """`ir` over the new table `nodes`, every reference to node `i` now to `remap[i]`."""

    def named(values: tuple) -> tuple:
        return tuple(v.model_copy(update={"node": remap[v.node]}) for v in values)

    return ir.model_copy(
        update={
            "nodes": tuple(nodes),
            "inputs": named(ir.inputs),
            "params": tuple(
                p.model_copy(update={"node": remap[p.node], "default_node": remap[p.default_node]})
                for p in ir.params
            ),
            "lets": named(ir.lets),
            "terms": named(ir.terms),
            "metrics": named(ir.metrics),
            "weights": {t: remap[w] for t, w in ir.weights.items()},
            "step_node": remap[ir.step_node],
            "states": tuple(
                s.model_copy(
                    update={
                        "node": remap[s.node],
                        "init_node": remap[s.init_node],
                        "update": remap[s.update],
                    }
                )
                for s in ir.states
            ),
            "learned": named(ir.learned),
            "emas": named(ir.emas),
        }
    )


def roots(ir: SpecIR) -> set[int]:
    """The nodes the spec refers to by name or role: everything else is reached through them."""
    found = {ir.step_node, *ir.weights.values()}
    found.update(i.node for i in ir.inputs)
    for p in ir.params:
        found.update((p.node, p.default_node))
    for values in (ir.lets, ir.terms, ir.metrics, ir.learned, ir.emas):
        found.update(v.node for v in values)
    for state in ir.states:
        found.update((state.node, state.init_node, state.update))
    return found


def reachable(nodes: tuple[Node, ...] | list[Node], start: set[int]) -> set[int]:
    """`start` and every node its values are computed from (the table is in SSA order)."""
    seen = set(start)
    for n in reversed(nodes):
        if n.id in seen:
            seen.update(n.args)
    return seen
