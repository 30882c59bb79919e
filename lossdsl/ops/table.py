"""The op table: every built-in op of the language, one entry each.

The builder reads signatures, shape and dtype rules from here; the backend reads
`lowering`; the analysis reads `facts`. Nothing else names ops.
"""

from __future__ import annotations

from dataclasses import replace

from lossdsl.ops import rules, scalar
from lossdsl.ops.op import DIM, DIMS, FLAG, MASK, NUMBER, NUMBERS, SIZE, TENSOR, Arg, Op

X = (Arg("x"),)


def _unary(name: str, lowering: str, dtype=rules.floating, doc: str = "") -> Op:
    return Op(name, X, rules.same_as_broadcast, dtype, lowering, "elementwise", doc)


def _binary(name: str, lowering: str, dtype=rules.arithmetic, arg_names=("a", "b")) -> Op:
    args = tuple(Arg(n) for n in arg_names)
    return Op(name, args, rules.same_as_broadcast, dtype, lowering, "elementwise")


def _reduction(name: str, lowering: str, dtype=rules.sum_kind, extra: tuple[Arg, ...] = ()) -> Op:
    args = (
        Arg("x"),
        Arg("dim", DIMS, None),
        Arg("where", MASK, None),
        Arg("keepdim", FLAG, False),
        *extra,
    )
    return Op(name, args, rules.reduced, dtype, lowering, "reduction")


def _schedule(name: str, args: tuple[Arg, ...], doc: str) -> Op:
    evaluate = getattr(scalar, name, None) or (lambda step, value: value)
    return Op(name, args, rules.scalar, rules.floating, name, "schedule", doc, scalar=evaluate)


_SCHEDULE_SPAN = (Arg("steps"), Arg("begin", TENSOR, 0))

OP_LIST: list[Op] = [
    # arithmetic and logic (the operators of the language)
    _binary("add", "operator.add"),
    _binary("sub", "operator.sub"),
    _binary("mul", "operator.mul"),
    _binary("div", "operator.truediv", dtype=rules.floating),
    _binary("pow", "operator.pow"),
    _unary("neg", "operator.neg", dtype=rules.arithmetic),
    *(
        _binary(name, f"operator.{name}", dtype=rules.boolean)
        for name in ("lt", "le", "gt", "ge", "eq", "ne")
    ),
    _binary("and", "operator.and_", dtype=rules.logical),
    _binary("or", "operator.or_", dtype=rules.logical),
    _unary("not", "operator.invert", dtype=rules.logical),
    # elementwise
    _unary("exp", "torch.exp"),
    _unary("log", "torch.log"),
    _unary("log1p", "torch.log1p"),
    _unary("expm1", "torch.expm1"),
    _unary("log1mexp", "log1mexp", doc="log(1 - exp(x)) for x < 0, computed stably"),
    _unary("sqrt", "torch.sqrt"),
    _unary("abs", "torch.abs", dtype=rules.keeps_kind),
    _unary("square", "torch.square", dtype=rules.keeps_kind),
    _unary("sign", "torch.sign", dtype=rules.keeps_kind),
    _unary("floor", "torch.floor", dtype=rules.keeps_kind),
    _unary("round", "torch.round", dtype=rules.keeps_kind),
    _unary("sigmoid", "torch.sigmoid"),
    _unary("logsigmoid", "torch.nn.functional.logsigmoid"),
    _unary("softplus", "softplus", doc="log1p(exp(-|x|)) + max(x, 0), exact (no threshold)"),
    _unary("tanh", "torch.tanh"),
    _unary("relu", "torch.relu", dtype=rules.keeps_kind),
    _unary("cos", "torch.cos"),
    _binary("xlogy", "torch.xlogy", dtype=rules.floating, arg_names=("x", "y")),
    _binary("logaddexp", "torch.logaddexp", dtype=rules.floating),
    _binary("minimum", "torch.minimum", dtype=rules.keeps_kind),
    _binary("maximum", "torch.maximum", dtype=rules.keeps_kind),
    Op(
        "clamp",
        (Arg("x"), Arg("min", TENSOR, None), Arg("max", TENSOR, None)),
        rules.same_as_broadcast,
        rules.keeps_kind,
        "clamp",
        "elementwise",
    ),
    Op(
        "where",
        (Arg("condition", MASK), Arg("a"), Arg("b")),
        rules.same_as_broadcast,
        rules.where_kind,
        "torch.where",
        "elementwise",
    ),
    Op("detach", X, rules.same_as_broadcast, rules.keeps_kind, "detach", "elementwise"),
    # reductions
    _reduction("sum", "reduce_sum"),
    _reduction("mean", "reduce_mean", dtype=rules.floating),
    _reduction("max", "reduce_max", dtype=rules.extreme_kind),
    _reduction("min", "reduce_min", dtype=rules.extreme_kind),
    _reduction("logsumexp", "reduce_logsumexp", dtype=rules.floating),
    _reduction("var", "reduce_var", dtype=rules.floating, extra=(Arg("correction", NUMBER, 0),)),
    _reduction("std", "reduce_std", dtype=rules.floating, extra=(Arg("correction", NUMBER, 0),)),
    Op(
        "count",
        (Arg("m"), Arg("dim", DIMS, None), Arg("where", MASK, None), Arg("keepdim", FLAG, False)),
        rules.reduced,
        rules.counted,
        "reduce_count",
        "reduction",
    ),
    Op(
        "argmax",
        (Arg("x"), Arg("dim", DIM), Arg("keepdim", FLAG, False)),
        rules.reduced_one,
        rules.integer,
        "argmax",
        "reduction",
    ),
    # distributions
    Op(
        "softmax",
        (Arg("x"), Arg("dim", DIM)),
        rules.along_one_dim,
        rules.floating,
        "torch.softmax",
        "distribution",
    ),
    Op(
        "log_softmax",
        (Arg("x"), Arg("dim", DIM)),
        rules.along_one_dim,
        rules.floating,
        "torch.log_softmax",
        "distribution",
    ),
    Op(
        "entropy",
        (Arg("x"), Arg("dim", DIM)),
        rules.without_dim,
        rules.floating,
        "entropy",
        "distribution",
        doc="entropy of softmax(x, dim)",
    ),
    Op(
        "gather",
        (Arg("x"), Arg("index"), Arg("dim", DIM)),
        rules.gathered,
        rules.index_into,
        "gather",
        "distribution",
    ),
    Op(
        "one_hot",
        (Arg("index"), Arg("n", SIZE)),
        rules.one_hot_dims,
        rules.int_index,
        "one_hot",
        "distribution",
    ),
    # shapes
    Op(
        "size",
        (Arg("dim", DIM),),
        rules.scalar,
        rules.floating,
        "size",
        "shape",
        doc="the size of a dim, as a scalar",
    ),
    # schedules of `step`
    _schedule("constant", (Arg("value"),), "the value at every step"),
    _schedule(
        "linear",
        (Arg("start"), Arg("end"), *_SCHEDULE_SPAN),
        "start + (end - start)·u, u = clamp((step - begin) / steps, 0, 1)",
    ),
    _schedule(
        "cosine",
        (Arg("start"), Arg("end"), *_SCHEDULE_SPAN),
        "end + (start - end)·(1 + cos(π·u))/2",
    ),
    _schedule(
        "exponential",
        (Arg("start"), Arg("end"), *_SCHEDULE_SPAN),
        "start·(end/start)^u (geometric)",
    ),
    _schedule("warmup", (Arg("steps"),), "clamp(step / steps, 0, 1)"),
    _schedule(
        "piecewise",
        (Arg("boundaries", NUMBERS), Arg("values", NUMBERS)),
        "v0 before s1, v1 from s1, …, the last value from the last boundary on",
    ),
]

OPS: dict[str, Op] = {
    op.name: (
        op
        if op.scalar or op.name not in scalar.ELEMENTWISE
        else replace(op, scalar=scalar.ELEMENTWISE[op.name])
    )
    for op in OP_LIST
}
OP_LIST[:] = list(OPS.values())

# Operators of the surface syntax, by their spelling.
BINARY_OPERATORS = {
    "+": "add",
    "-": "sub",
    "*": "mul",
    "/": "div",
    "^": "pow",
    "<": "lt",
    "<=": "le",
    ">": "gt",
    ">=": "ge",
    "==": "eq",
    "!=": "ne",
    "and": "and",
    "or": "or",
}
UNARY_OPERATORS = {"-": "neg", "not": "not"}

# `min(a, b)` is elementwise, `min(x, dim=…)` reduces.
ELEMENTWISE_FORM = {"min": "minimum", "max": "maximum"}

# Ops that only exist as operators, or that the builder handles itself.
NOT_CALLABLE = {
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "neg",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
    "and",
    "or",
    "not",
    "minimum",
    "maximum",
}

# Names reserved for later versions (LANGUAGE.md "Coming later").
RESERVED = {
    "global_sum": "data-parallel normalisation is coming in a later version",
    "world_size": "data-parallel normalisation is coming in a later version",
    "ema": "stateful ops are coming in a later version",
    "matmul": "fused linear heads are coming in a later version",
}

CALLABLE_NAMES = sorted(set(OPS) - NOT_CALLABLE | {"select"})

__all__ = [
    "OPS",
    "OP_LIST",
    "BINARY_OPERATORS",
    "UNARY_OPERATORS",
    "ELEMENTWISE_FORM",
    "RESERVED",
    "CALLABLE_NAMES",
    "SIZE",
    "DIM",
    "DIMS",
    "FLAG",
    "NUMBER",
    "NUMBERS",
    "MASK",
    "TENSOR",
]
