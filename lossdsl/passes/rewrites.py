"""Stability rewrites: formulas that overflow or cancel, replaced by their stable forms.

The rules are data (`REWRITES`, one page): a pattern over the SSA table, a replacement
template and a name, which the I500 diagnostic reports. Patterns are built with the same
binding as the language (`call("sum", exp(X), dim=D)`), so a rule reads like the spec
text it matches. A capture (`X`, `D`) matches any node or attribute value; a capture
used twice must see the same value twice; `ONE` matches the literal 1; `add` and `mul`
match their operands in either order.

The pass rewrites bottom-up over the node table to a fixed point. A rewritten node keeps
its span, its name and its def-inlining trail; the nodes a match read stay for their
other users (CSE merges duplicates later), and those left without users are dropped.

The nodes a rewrite makes carry an `Origin`: the user's expression they compute, so that a
hazard found on them later is reported in the user's text, not in the rewrite's. A rule's
`blame` names the op of its pattern whose hazards the replacement's are exactly (`exp(x) -
1` -> `expm1(x)` overflows where the user's `exp(x)` does); a hazard is then reported as
that op's, at that op's span, once with the op's own report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lossdsl.diagnostics import Diagnostic
from lossdsl.ir import Node, SpecIR
from lossdsl.ir.model import Origin
from lossdsl.ir.types import DimError, DtypeError, Kind, ShapeError, TensorType, broadcast
from lossdsl.ops import OPS
from lossdsl.ops.op import MASK, REQUIRED, TENSOR
from lossdsl.ops.table import BINARY_OPERATORS, UNARY_OPERATORS
from lossdsl.passes.renumber import reachable, renumbered, roots

# ---- patterns --------------------------------------------------------------------


@dataclass(frozen=True)
class Var:
    """A capture: any node as an argument, any value as an attribute."""

    name: str


@dataclass(frozen=True)
class Num:
    """A number literal: a scalar `const` node of this value (int or float)."""

    value: float


@dataclass(frozen=True)
class Call:
    """`op` applied to sub-patterns, with every attribute of the node given (fixed or
    captured): a node with an attribute the pattern does not mention does not match."""

    op: str
    args: tuple[Pattern, ...]
    attrs: tuple[tuple[str, Any], ...] = ()
    any_order: bool = False  # the two operands may come in either order


Pattern = Var | Num | Call


def call(op: str, *args: Pattern, **keywords: Any) -> Call:
    """`op(args…, name=…)` bound as the builder binds a call: tensor arguments become
    edges (their names recorded in `present`), the rest attributes with their defaults."""
    spec = OPS[op]
    bound = dict(zip((a.name for a in spec.args), args, strict=False)) | keywords
    tensors, attrs = [], {}
    for arg in spec.args:
        value = bound.get(arg.name, arg.default)
        if arg.kind in (TENSOR, MASK):
            if arg.name in bound:
                tensors.append(arg.name)
            elif arg.default is not None:
                raise ValueError(f"a pattern of {op}() must give `{arg.name}`")
        elif value is REQUIRED:
            raise ValueError(f"a pattern of {op}() must give `{arg.name}=`")
        else:
            attrs[arg.name] = value
    attrs["present"] = tuple(tensors)
    return Call(op, tuple(bound[t] for t in tensors), tuple(attrs.items()))


def _call(op: str) -> Callable[..., Call]:
    return lambda *args, **keywords: call(op, *args, **keywords)


def add(a: Pattern, b: Pattern) -> Call:
    return Call("add", (a, b), any_order=True)


def mul(a: Pattern, b: Pattern) -> Call:
    return Call("mul", (a, b), any_order=True)


def sub(a: Pattern, b: Pattern) -> Call:
    return Call("sub", (a, b))


def div(a: Pattern, b: Pattern) -> Call:
    return Call("div", (a, b))


def neg(a: Pattern) -> Call:
    return Call("neg", (a,))


log, exp, log1p, expm1 = map(_call, ("log", "exp", "log1p", "expm1"))
sigmoid, logsigmoid, softplus, xlogy = map(_call, ("sigmoid", "logsigmoid", "softplus", "xlogy"))
xlogx = _call("xlogx")
softmax, log_softmax, sum_, logsumexp = map(_call, ("softmax", "log_softmax", "sum", "logsumexp"))

X, Y, A, B, M = Var("x"), Var("y"), Var("a"), Var("b"), Var("m")
D, K = Var("D"), Var("keepdim")  # attribute captures: the reduced dims, keepdim
ONE = Num(1)

Guard = Callable[[dict[str, Any], list[Node]], bool]


def not_a_number(var: Var) -> Guard:
    """`0.5 * log(v)` is a scale, not an x·log(y) that can meet 0·log(0)."""
    return lambda bound, table: table[bound[var.name]].op != "const"


def mask_within(x: Var, mask: Var) -> Guard:
    """A `where=` mask that adds no dims to the reduced value."""

    def check(bound: dict[str, Any], table: list[Node]) -> bool:
        dims = table[bound[x.name]].type.dims
        return broadcast(dims, table[bound[mask.name]].type.dims) == dims

    return check


@dataclass(frozen=True)
class Rule:
    name: str  # what I500 reports
    match: Pattern
    replace: Pattern
    when: Guard | None = None
    # The call in `match` that answers for the replacement's hazards: the same op facts on
    # the same offending argument (a capture), so its message and fix read as the user's.
    blame: Call | None = None

    def __post_init__(self) -> None:
        if self.blame is not None:  # the very call of `match` (matching records it by identity)
            object.__setattr__(self, "blame", _occurrence(self.match, self.blame))


def _occurrence(pattern: Pattern, wanted: Call) -> Call:
    """The call in `pattern` equal to `wanted`."""
    if pattern == wanted:
        assert isinstance(pattern, Call)
        return pattern
    for sub_pattern in pattern.args if isinstance(pattern, Call) else ():
        try:
            return _occurrence(sub_pattern, wanted)
        except ValueError:
            continue
    raise ValueError(f"{wanted} is not a call of the rule's pattern")


# ---- the rules ---------------------------------------------------------------------
# Tried in order at each node: the first that matches wins (softplus before log1p).

REWRITES: list[Rule] = [
    Rule("log-softmax", log(softmax(X, dim=D)), log_softmax(X, dim=D)),
    Rule(
        "logsumexp",
        log(sum_(exp(X), dim=D, keepdim=K)),
        logsumexp(X, dim=D, keepdim=K),
    ),
    # Exact with `where=` too: both give -inf on an empty selection. The mask may not add
    # dims (the backend's logsumexp over all dims reduces the value's own dims only).
    Rule(
        "logsumexp",
        log(sum_(exp(X), where=M, dim=D, keepdim=K)),
        logsumexp(X, where=M, dim=D, keepdim=K),
        when=mask_within(X, M),
    ),
    Rule("softplus", log(add(ONE, exp(X))), softplus(X)),
    Rule("softplus", log1p(exp(X)), softplus(X)),
    Rule("log1p", log(add(ONE, X)), log1p(X)),
    Rule("expm1", sub(exp(X), ONE), expm1(X), blame=exp(X)),
    Rule("logsigmoid", log(sigmoid(X)), logsigmoid(X)),
    Rule("log1m-sigmoid", log(sub(ONE, sigmoid(X))), logsigmoid(neg(X))),
    Rule("xlogx", mul(X, log(X)), xlogx(X), when=not_a_number(X), blame=log(X)),
    Rule("xlogy", mul(X, log(Y)), xlogy(X, Y), when=not_a_number(X), blame=log(Y)),
    Rule("exp-ratio", div(exp(A), exp(B)), exp(sub(A, B))),
    Rule("log-exp", log(exp(X)), X),
]

# ---- the pass ----------------------------------------------------------------------

_MAX_SWEEPS = 100  # every sweep that changes something removes a pattern; a guard only


def rewrite_for_stability(ir: SpecIR) -> tuple[SpecIR, list[Diagnostic]]:
    diagnostics: list[Diagnostic] = []
    for _ in range(_MAX_SWEEPS):
        ir, found = _sweep(ir)
        if not found:
            break
        diagnostics += found
    return ir, diagnostics


def _sweep(ir: SpecIR) -> tuple[SpecIR, list[Diagnostic]]:
    """One bottom-up pass over the table; each live node is tried against every rule."""
    live = reachable(ir.nodes, roots(ir))
    table: list[Node] = []
    remap: dict[int, int] = {}
    carried: dict[int, int] = {}  # new id -> old id, for nodes kept as they were
    found: list[Diagnostic] = []
    for old in ir.nodes:
        node = old.model_copy(update={"id": len(table), "args": tuple(remap[a] for a in old.args)})
        applied = _apply_first(node, table, ir.sources) if old.id in live else None
        if applied is None:
            table.append(node)
            carried[node.id] = old.id
            remap[old.id] = node.id
            continue
        rule, new_nodes, root = applied
        table += new_nodes
        remap[old.id] = root
        notes = tuple(f"in {call}" for call in reversed(node.via))  # inlined through defs
        found.append(Diagnostic("I500", rule, node.span, notes=notes))
    if not found:
        return ir, []
    # Drop what the rewrites left without users; nodes that were already unused stay.
    now_live = reachable(table, {remap[r] for r in roots(ir)})
    unused_before = {new for new, old in carried.items() if old not in live}
    keep = now_live | unused_before
    for n in reversed(table):
        if n.id in keep:
            keep.update(n.args)
    compact: dict[int, int] = {}
    nodes: list[Node] = []
    for n in table:
        if n.id in keep:
            compact[n.id] = len(nodes)
            nodes.append(
                n.model_copy(update={"id": len(nodes), "args": tuple(compact[a] for a in n.args)})
            )
    final = {o: compact[n] for o, n in remap.items() if n in compact}
    return renumbered(ir, nodes, final), found


def _apply_first(
    node: Node, table: list[Node], sources: dict[str, str]
) -> tuple[str, list[Node], int] | None:
    """The first rule that matches `node` and rebuilds it with the same type: its message,
    the new nodes (to append to `table`) and the id that now stands for `node`."""
    for rule in REWRITES:
        bound = _match_node(rule.match, node, table, {})
        if bound is None or (rule.when is not None and not rule.when(bound, table)):
            continue
        built = _instantiate(rule.replace, bound, table, node, _origin(rule, bound, table, node))
        if built is None:
            continue
        new_nodes, root = built
        shown = _captures_as_written(bound, table, sources)
        message = (
            f"rewrote {_show(rule.match, bound, shown)} as {_show(rule.replace, bound, shown)} "
            f"[{rule.name}]"
        )
        return message, new_nodes, root
    return None


def _origin(rule: Rule, bound: dict, table: list[Node], root: Node) -> Origin:
    """Where the replacement of `root` comes from in the user's text: the blamed call's
    node when the rule names one, else the whole expression the rule replaced."""
    if rule.blame is not None:
        blamed = table[_unaliased(bound[_at(rule.blame)], table)]
        if blamed.origin is not None:  # itself made by an earlier rewrite
            return blamed.origin
        return Origin(span=blamed.span, op=blamed.op)
    return Origin(span=root.origin.span if root.origin is not None else root.span)


# ---- matching ----------------------------------------------------------------------


def _match(pattern: Pattern, node_id: int, table: list[Node], bound: dict) -> dict | None:
    if isinstance(pattern, Var):
        if pattern.name not in bound:
            return {**bound, pattern.name: node_id}
        return bound if _same(bound[pattern.name], node_id, table) else None
    return _match_node(pattern, table[_unaliased(node_id, table)], table, bound)


def _match_node(pattern: Pattern, node: Node, table: list[Node], bound: dict) -> dict | None:
    if isinstance(pattern, Num):
        literal = node.op == "const" and node.type.kind != "bool" and node.type.dims == ()
        return bound if literal and node.attrs["value"] == pattern.value else None
    if isinstance(pattern, Var):
        raise ValueError("a rule must match an op at its root")
    if node.op != pattern.op or len(node.args) != len(pattern.args):
        return None
    if set(node.attrs) != {key for key, _ in pattern.attrs}:
        return None
    for key, want in pattern.attrs:
        if isinstance(want, Var):
            if want.name in bound and bound[want.name] != node.attrs[key]:
                return None
            bound = {**bound, want.name: node.attrs[key]}
        elif node.attrs[key] != want:
            return None
    orders = [node.args, node.args[::-1]] if pattern.any_order else [node.args]
    for swapped, args in enumerate(orders):
        result: dict | None = {**bound, _swapped(pattern): True} if swapped else bound
        for sub_pattern, arg in zip(pattern.args, args, strict=True):
            result = _match(sub_pattern, arg, table, result) if result is not None else None
        if result is not None:
            return {**result, _at(pattern): node.id}
    return None


def _at(pattern: Call) -> tuple[str, int]:
    """The key that records, among the captures, the node a call of the pattern matched."""
    return ("at", id(pattern))


def _swapped(pattern: Call) -> tuple[str, int]:
    """The key that records, among the captures, that `pattern` matched its operands
    in the other order (so the message shows them as written)."""
    return ("swapped", id(pattern))


def _unaliased(node_id: int, table: list[Node]) -> int:
    while table[node_id].op == "alias":
        node_id = table[node_id].args[0]
    return node_id


def _same(a: int, b: int, table: list[Node]) -> bool:
    """The same value: the same node, or equal ops on the same values (before CSE).
    Compared pair by pair from a stack of its own, each pair once, so a deep or widely
    shared expression costs its size, never the call stack's depth."""
    pairs, compared = [(a, b)], set()
    while pairs:
        a, b = (_unaliased(n, table) for n in pairs.pop())
        if a == b or (a, b) in compared:
            continue
        compared.add((a, b))
        x, y = table[a], table[b]
        if x.op != y.op or x.op in ("input", "param", "step") or x.attrs != y.attrs:
            return False
        if x.type != y.type or len(x.args) != len(y.args):
            return False
        pairs.extend(zip(x.args, y.args, strict=True))
    return True


# ---- building the replacement --------------------------------------------------------


def _instantiate(
    template: Pattern, bound: dict, table: list[Node], root: Node, origin: Origin
) -> tuple[list[Node], int] | None:
    """New nodes for `template` (ids from len(table)) and the id of its value; None when
    the result would not have the replaced node's type (or does not type at all). The value
    carries `origin`; the nodes inside it are parts of the user's whole expression."""
    inner = Origin(span=root.origin.span if root.origin is not None else root.span)
    new: list[Node] = []

    def node_of(node_id: int) -> Node:
        return table[node_id] if node_id < len(table) else new[node_id - len(table)]

    def build(p: Pattern) -> int:
        if isinstance(p, Var):
            return bound[p.name]
        if isinstance(p, Num):
            kind: Kind = "int" if float(p.value).is_integer() else "float"
            return emit("const", (), {"value": p.value}, TensorType(kind, (), weak=True))
        args = tuple(build(a) for a in p.args)
        attrs = {k: bound[v.name] if isinstance(v, Var) else v for k, v in p.attrs}
        op, types = OPS[p.op], [node_of(a).type for a in args]
        kind = op.dtype(types, {**attrs, "_op": op.name})
        return emit(p.op, args, attrs, TensorType(kind, op.shape(types, attrs)))

    def emit(op: str, args: tuple[int, ...], attrs: dict, type_: TensorType) -> int:
        node_id = len(table) + len(new)
        new.append(
            Node(
                id=node_id,
                op=op,
                args=args,
                attrs=attrs,
                type=type_,
                span=root.span,
                via=root.via,
                origin=inner,
            )
        )
        return node_id

    try:
        value = build(template)
    except (ShapeError, DimError, DtypeError):
        return None
    if node_of(value).type != root.type:
        return None
    aliased = value < len(table) and root.name is not None
    if aliased:  # an existing value, under a new name
        value = emit("alias", (value,), {}, root.type)
    if value >= len(table):  # the new node stands for the old one, under its name
        # An alias computes nothing new: the user's text still reads as what it computes.
        made = root.origin if aliased else origin
        new[-1] = new[-1].model_copy(update={"name": root.name, "origin": made})
    return new, value


# ---- messages ------------------------------------------------------------------------

_SYMBOLS = {op: symbol for symbol, op in BINARY_OPERATORS.items()}
_PREFIX = {op: symbol for symbol, op in UNARY_OPERATORS.items()}


def _captures_as_written(
    bound: dict, table: list[Node], sources: dict[str, str]
) -> Callable[[Var, bool], str]:
    """A capture as the user wrote what it matched (`logits`, `lp - old`), in parentheses
    when it is an operand of an operator; its pattern name where that text is not at hand
    (an expression over several lines)."""

    def shown(var: Var, nested: bool) -> str:
        node = table[bound[var.name]]
        if node.origin is not None and node.name is None:  # made by an earlier rewrite
            text = spec_text(node, table, lambda a: written(table[a]) or "…")
        else:
            text = written(node) or var.name
        operator = node.name is None and (node.op in _SYMBOLS or node.op in _PREFIX)
        return f"({text})" if nested and operator and text != var.name else text

    def written(node: Node) -> str:
        span, source = node.span, sources.get(node.span.file)
        lines = source.split("\n") if source is not None else []
        if node.name is not None or span.line != span.end_line or not 1 <= span.line <= len(lines):
            return node.name or ""  # a named value is referred to by its name
        return lines[span.line - 1][span.col - 1 : span.end_col - 1]

    return shown


def _show(p: Pattern, bound: dict, shown: Callable[[Var, bool], str], nested: bool = False) -> str:
    """A pattern as spec text, with what it matched: `log(softmax(logits, dim=V))`."""
    if isinstance(p, Var):
        return shown(p, nested)
    if isinstance(p, Num):
        return f"{p.value:g}"
    if p.op in _SYMBOLS and len(p.args) == 2:
        operands = p.args[::-1] if bound.get(_swapped(p)) else p.args
        text = f" {_SYMBOLS[p.op]} ".join(_show(a, bound, shown, nested=True) for a in operands)
        return f"({text})" if nested else text
    if p.op in _PREFIX:
        return _PREFIX[p.op] + _show(p.args[0], bound, shown, nested=True)
    attrs = dict(p.attrs)
    names = attrs.pop("present", ())
    spec = {a.name: a for a in OPS[p.op].args}
    parts = []
    for name, arg in zip(names, p.args, strict=True):
        text = _show(arg, bound, shown)
        parts.append(text if spec[name].required else f"{name}={text}")
    for name, value in attrs.items():
        value = bound[value.name] if isinstance(value, Var) else value
        if value != spec[name].default:
            parts.append(f"{name}={_literal(value)}")
    return f"{p.op}({', '.join(parts)})"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return value[0] if len(value) == 1 else f"[{', '.join(map(str, value))}]"
    return str(value)


def spec_text(node: Node, nodes: Sequence[Node], text: Callable[[int], str]) -> str:
    """`node` as spec text, each argument's text given by `text`: how a node a rewrite made
    reads (`exp(a - b)`), for diagnostics that quote it."""

    def operand(arg: int) -> str:
        shown, node = text(arg), nodes[arg]
        operator = node.name is None and (node.op in _SYMBOLS or node.op in _PREFIX)
        return f"({shown})" if operator else shown

    if node.op == "const":
        return _literal(node.attrs["value"])
    if node.op == "alias":
        return text(node.args[0])
    if node.op in _SYMBOLS and len(node.args) == 2:
        return f" {_SYMBOLS[node.op]} ".join(operand(a) for a in node.args)
    if node.op in _PREFIX:
        symbol = _PREFIX[node.op]
        return symbol + ("" if symbol == "-" else " ") + operand(node.args[0])
    if node.op not in OPS:
        return node.name or node.op
    spec = {a.name: a for a in OPS[node.op].args}
    names = node.attrs.get("present", tuple(a.name for a in OPS[node.op].tensor_args()))
    parts = [
        text(arg) if spec[name].required else f"{name}={text(arg)}"
        for name, arg in zip(names, node.args, strict=False)
    ]
    for name, value in node.attrs.items():
        if name in spec and value != spec[name].default:
            parts.append(f"{name}={_literal(value)}")
    return f"{node.op}({', '.join(parts)})"
