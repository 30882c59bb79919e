"""Common-subexpression elimination: equal nodes (same op, arguments and attributes) merge.

`masked_mean(x, mask)` written three times counts the mask once. A merged node that the
spec named stays visible under its name, as an alias of the first.
"""

from __future__ import annotations

from typing import Any

from lossdsl.diagnostics import Diagnostic
from lossdsl.ir import Node, SpecIR
from lossdsl.passes.renumber import renumbered

_UNIQUE = {"input", "param", "step", "state", "learned"}


def share_common_subexpressions(ir: SpecIR) -> tuple[SpecIR, list[Diagnostic]]:
    seen: dict[Any, int] = {}
    remap: dict[int, int] = {}
    nodes: list[Node] = []
    for node in ir.nodes:
        args = tuple(remap[a] for a in node.args)
        key = None if node.op in _UNIQUE else (node.op, args, _freeze(node.attrs), node.type)
        if key is not None and key in seen:
            canonical = seen[key]
            if node.name is None or node.name == nodes[canonical].name:
                remap[node.id] = canonical
                continue
            node = node.model_copy(update={"op": "alias", "args": (canonical,), "attrs": {}})
            args = node.args
        new = node.model_copy(update={"id": len(nodes), "args": args})
        nodes.append(new)
        remap[node.id] = new.id
        if key is not None and key not in seen:
            seen[key] = new.id
    return renumbered(ir, nodes, remap), []


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value
