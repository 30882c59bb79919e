"""The op table: every built-in op of the language, one entry each.

The builder reads signatures, shape and dtype rules; the backend reads `lowering`; the
analysis reads `facts` (intervals, domains, curvature, smoothness, hazards). Nothing
else names ops.
"""

from __future__ import annotations

from dataclasses import replace

from lossdsl.analysis import curvature as dcp
from lossdsl.analysis import intervals as iv
from lossdsl.ops import rules, scalar
from lossdsl.ops.facts import (
    Facts,
    S,
    atom,
    clamp_curvature,
    clamp_image,
    constant_image,
    count_image,
    cumsum_image,
    detached,
    domain,
    entropy_image,
    exp_overflows,
    exponential_domain,
    exponential_image,
    gather_image,
    image,
    index_image,
    linear_image,
    logsumexp_image,
    matmul_image,
    max_count,
    max_image,
    mean_image,
    min_image,
    norm_image,
    normalize_image,
    piecewise_image,
    power_curvature,
    power_domain,
    power_image,
    power_overflows,
    power_steep,
    product_curvature,
    product_partials,
    quotient_curvature,
    quotient_partials,
    refine_greater,
    refine_greater_equal,
    refine_less,
    refine_less_equal,
    s_curve,
    size_image,
    spread_image,
    steep_at_zero,
    sum_image,
    unit_image,
    where_curvature,
    xlogy_curvature,
)
from lossdsl.ops.op import (
    DIM,
    DIMS,
    FLAG,
    MASK,
    NEW_DIM,
    NUMBER,
    NUMBERS,
    SIZE,
    TENSOR,
    Arg,
    Op,
)
from lossdsl.ops.robust import cauchy_image, huber_image, log_cosh_image, smooth_l1_image

INC, DEC, ABS_INC = dcp.INCREASING, dcp.DECREASING, dcp.ABS_INCREASING
CONVEX, CONCAVE, AFFINE = dcp.CONVEX, dcp.CONCAVE, dcp.AFFINE
X = (Arg("x"),)
STEP = Facts(smooth=S.ZERO_GRADIENT, continuous=False)  # piecewise constant


def _unary(name: str, lowering: str, facts: Facts, dtype=rules.floating, doc: str = "") -> Op:
    return Op(name, X, rules.same_as_broadcast, dtype, lowering, "elementwise", doc, facts=facts)


def _binary(
    name: str, lowering: str, facts: Facts, dtype=rules.arithmetic, arg_names=("a", "b")
) -> Op:
    args = tuple(Arg(n) for n in arg_names)
    return Op(name, args, rules.same_as_broadcast, dtype, lowering, "elementwise", facts=facts)


def _reduction(
    name: str,
    lowering: str,
    facts: Facts,
    dtype=rules.sum_kind,
    extra: tuple[Arg, ...] = (),
    accumulate: str | None = None,
) -> Op:
    args = (
        Arg("x"),
        Arg("dim", DIMS, None),
        Arg("where", MASK, None),
        Arg("keepdim", FLAG, False),
        *extra,
    )
    return Op(
        name,
        args,
        rules.reduced,
        dtype,
        lowering,
        "reduction",
        facts=facts,
        accumulate=accumulate,
        mixes=accumulate is None,
    )


def _schedule(name: str, args: tuple[Arg, ...], facts: Facts, doc: str) -> Op:
    evaluate = getattr(scalar, name, None) or (lambda step, value: value)
    return Op(
        name,
        args,
        rules.scalar,
        rules.floating,
        name,
        "schedule",
        doc,
        scalar=evaluate,
        facts=facts,
    )


def _comparison(name: str, fn, refine=None) -> Op:
    facts = replace(STEP, interval=image(fn), refine=refine)
    return _binary(name, f"operator.{name}", facts, rules.boolean)


def _robust(name: str, param: str, image_rule, curvature, doc: str) -> Op:
    facts = Facts(interval=image_rule, curvature=curvature, lipschitz=True)
    return Op(
        name,
        (Arg("r"), Arg(param)),
        rules.same_as_broadcast,
        rules.floating,
        name,
        "elementwise",
        doc,
        facts=facts,
    )


_SPAN = (Arg("steps"), Arg("begin", TENSOR, 0))


def not_convex(cs, ivs, attrs):  # Cauchy: neither convex nor concave, whatever its argument
    return dcp.CONSTANT if all(c is dcp.CONSTANT for c in cs) else dcp.UNKNOWN


LOG_FIX = "log(clamp({x}, min=1e-8))"
LOG_OF_ZERO = "log of a value that can be 0: `{x}` lies in {interval}"
EXP_OVERFLOW = "{op}() can overflow float32: its argument lies in {interval}, above 88"
EXP_FIX = "{op}(clamp({x}, max=20))"

# exp and expm1: convex, increasing, overflow float32 past 88
EXP_FACTS = Facts(
    curvature=atom(CONVEX, INC),
    overflows=exp_overflows,
    overflow_message=EXP_OVERFLOW,
    overflow_fix=EXP_FIX,
    precision_sensitive=True,
)

# One entry per op. Kept compact on purpose (a screen of entries at a time), so the
# formatter leaves this list alone.
# fmt: off
OP_LIST: list[Op] = [
    # arithmetic and logic (the operators of the language)
    _binary("add", "operator.add",
            Facts(image(iv.add), curvature=atom(AFFINE, INC, INC), lipschitz=True)),
    _binary("sub", "operator.sub",
            Facts(image(iv.sub), curvature=atom(AFFINE, INC, DEC), lipschitz=True,
                  same_args=lambda x: iv.ZERO)),
    _binary("mul", "operator.mul",
            Facts(image(iv.mul), curvature=product_curvature, same_args=iv.square,
                  partials=product_partials)),
    _binary("div", "operator.truediv",
            Facts(image(iv.div), domain(b=iv.DOMAIN_NONZERO), quotient_curvature,
                  partials=quotient_partials, fix="{x} clamped away from 0, e.g. max({x}, 1e-8)",
                  pole_message="division by a value that can be 0: the denominator lies in "
                               "{interval}"),
            dtype=rules.floating),
    _binary("pow", "operator.pow",
            Facts(power_image, power_domain, power_curvature, overflows=power_overflows,
                  steep=power_steep, fix="clamp({x}, min=1e-8) as the base",
                  overflow_message="{op}() can overflow float32: the result reaches {result}",
                  overflow_fix="bound the base or the exponent with clamp(…)")),
    _unary("neg", "operator.neg",
           Facts(image(iv.neg), curvature=atom(AFFINE, DEC), lipschitz=True),
           dtype=rules.arithmetic),
    _comparison("lt", iv.less, refine_less),
    _comparison("le", iv.less_equal, refine_less_equal),
    _comparison("gt", iv.greater, refine_greater),
    _comparison("ge", iv.greater_equal, refine_greater_equal),
    _comparison("eq", iv.equal),
    _comparison("ne", iv.not_equal),
    _binary("and", "operator.and_", replace(STEP, interval=image(iv.logical_and)),
            dtype=rules.logical),
    _binary("or", "operator.or_", replace(STEP, interval=image(iv.logical_or)),
            dtype=rules.logical),
    _unary("not", "operator.invert", replace(STEP, interval=image(iv.logical_not)),
           dtype=rules.logical),
    # elementwise
    _unary("exp", "torch.exp", replace(EXP_FACTS, interval=image(iv.exp))),
    _unary("expm1", "torch.expm1", replace(EXP_FACTS, interval=image(iv.expm1))),
    _unary("log", "torch.log",
           Facts(image(iv.log), domain(x=iv.DOMAIN_LOG), atom(CONCAVE, INC),
                 precision_sensitive=True, fix=LOG_FIX, pole_message=LOG_OF_ZERO)),
    _unary("log1p", "torch.log1p",
           Facts(image(iv.log1p), domain(x=iv.DOMAIN_LOG1P), atom(CONCAVE, INC),
                 precision_sensitive=True, fix="log1p(clamp({x}, min=-1 + 1e-6))")),
    _unary("log1mexp", "log1mexp",
           Facts(image(iv.log1mexp), domain(x=iv.DOMAIN_LOG1MEXP), atom(CONCAVE, DEC),
                 precision_sensitive=True, fix="log1mexp(clamp({x}, max=-1e-8))"),
           doc="log(1 - exp(x)) for x < 0, computed stably"),
    _unary("sqrt", "torch.sqrt",
           Facts(image(iv.sqrt), domain(x=iv.DOMAIN_SQRT), atom(CONCAVE, INC),
                 steep=steep_at_zero, fix="sqrt(clamp({x}, min=1e-12))")),
    _unary("abs", "torch.abs",
           Facts(image(iv.absolute), curvature=atom(CONVEX, ABS_INC), smooth=S.KINKED,
                 kinks=(0.0,), lipschitz=True),
           dtype=rules.keeps_kind),
    _unary("square", "torch.square",
           Facts(image(iv.square), curvature=atom(CONVEX, ABS_INC)), dtype=rules.keeps_kind),
    _unary("sign", "torch.sign", replace(STEP, interval=image(iv.sign)), dtype=rules.keeps_kind),
    _unary("floor", "torch.floor", replace(STEP, interval=image(iv.floor)),
           dtype=rules.keeps_kind),
    _unary("round", "torch.round", replace(STEP, interval=image(iv.rint)),
           dtype=rules.keeps_kind),
    _unary("sigmoid", "torch.sigmoid",
           Facts(image(iv.sigmoid), curvature=s_curve, lipschitz=True)),
    _unary("logsigmoid", "torch.nn.functional.logsigmoid",
           Facts(image(iv.logsigmoid), curvature=atom(CONCAVE, INC), lipschitz=True,
                 precision_sensitive=True)),
    _unary("softplus", "softplus",
           Facts(image(iv.softplus), curvature=atom(CONVEX, INC), lipschitz=True,
                 precision_sensitive=True),
           doc="log1p(exp(-|x|)) + max(x, 0), exact (no threshold)"),
    _unary("tanh", "torch.tanh", Facts(image(iv.tanh), curvature=s_curve, lipschitz=True)),
    _unary("relu", "torch.relu",
           Facts(image(iv.relu), curvature=atom(CONVEX, INC), smooth=S.KINKED, kinks=(0.0,),
                 lipschitz=True),
           dtype=rules.keeps_kind),
    _unary("cos", "torch.cos", Facts(image(iv.cos), lipschitz=True)),
    _binary("xlogy", "torch.xlogy",
            Facts(image(iv.xlogy), domain(y=iv.DOMAIN_XLOGY_Y), xlogy_curvature,
                  precision_sensitive=True, fix="xlogy({0}, clamp({1}, min=1e-8))",
                  pole_message=LOG_OF_ZERO),
            dtype=rules.floating, arg_names=("x", "y")),
    _unary("xlogx", "xlogx",
           Facts(image(iv.xlogx), domain(x=iv.DOMAIN_SQRT), atom(CONVEX, dcp.NONMONOTONE),
                 precision_sensitive=True, fix="xlogx(clamp({x}, min=0))"),
           doc="x·log(x), 0 at x = 0"),
    _binary("logaddexp", "torch.logaddexp",
            Facts(image(iv.logaddexp), curvature=atom(CONVEX, INC, INC), lipschitz=True,
                  precision_sensitive=True),
            dtype=rules.floating),
    _binary("minimum", "torch.minimum",
            Facts(image(iv.minimum), curvature=atom(CONCAVE, INC, INC), smooth=S.KINKED,
                  lipschitz=True),
            dtype=rules.keeps_kind),
    _binary("maximum", "torch.maximum",
            Facts(image(iv.maximum), curvature=atom(CONVEX, INC, INC), smooth=S.KINKED,
                  lipschitz=True),
            dtype=rules.keeps_kind),
    Op("clamp", (Arg("x"), Arg("min", TENSOR, None), Arg("max", TENSOR, None)),
       rules.same_as_broadcast, rules.keeps_kind, "clamp", "elementwise",
       facts=Facts(clamp_image, curvature=clamp_curvature, smooth=S.KINKED, lipschitz=True)),
    Op("where", (Arg("condition", MASK), Arg("a"), Arg("b")),
       rules.same_as_broadcast, rules.where_kind, "torch.where", "elementwise",
       facts=Facts(image(iv.where), curvature=where_curvature, lipschitz=True, selects=True)),
    Op("detach", X, rules.same_as_broadcast, rules.keeps_kind, "detach", "elementwise",
       facts=Facts(image(lambda x: x), curvature=detached, smooth=S.CONSTANT, lipschitz=True,
                   keeps_value=True)),
    # robust losses: facts composition cannot see (convexity that would need a `where`,
    # bounded gradients of saturating shapes)
    _unary("log_cosh", "log_cosh",
           Facts(log_cosh_image, curvature=atom(CONVEX, ABS_INC), lipschitz=True),
           doc="log(cosh(x)), computed as |x| + softplus(-2|x|) - log 2 (never overflows)"),
    _robust("huber", "delta", huber_image, atom(CONVEX, ABS_INC),
            "0.5·r² for |r| < delta, delta·(|r| - delta/2) beyond (torch's huber_loss)"),
    _robust("smooth_l1", "beta", smooth_l1_image, atom(CONVEX, ABS_INC),
            "huber(r, beta) / beta; |r| when beta = 0 (torch's smooth_l1_loss)"),
    _robust("cauchy", "alpha", cauchy_image, not_convex,
            "log(1 + (r/alpha)²), the Cauchy (Lorentzian) loss"),
    # reductions
    _reduction("sum", "reduce_sum",
               Facts(sum_image, curvature=atom(AFFINE, INC), lipschitz=True,
                     precision_sensitive=True), accumulate="sum"),
    _reduction("mean", "reduce_mean",
               Facts(mean_image, curvature=atom(AFFINE, INC), lipschitz=True,
                     precision_sensitive=True),
               dtype=rules.floating, accumulate="mean"),
    _reduction("max", "reduce_max",
               Facts(max_image, curvature=atom(CONVEX, INC), smooth=S.KINKED, lipschitz=True),
               dtype=rules.extreme_kind, accumulate="max"),
    _reduction("min", "reduce_min",
               Facts(min_image, curvature=atom(CONCAVE, INC), smooth=S.KINKED, lipschitz=True),
               dtype=rules.extreme_kind, accumulate="min"),
    _reduction("logsumexp", "reduce_logsumexp",
               Facts(logsumexp_image, curvature=atom(CONVEX, INC), lipschitz=True,
                     precision_sensitive=True),
               dtype=rules.floating, accumulate="logsumexp"),
    _reduction("var", "reduce_var", Facts(spread_image(False), precision_sensitive=True),
               dtype=rules.floating, extra=(Arg("correction", NUMBER, 0),)),
    _reduction("std", "reduce_std",
               Facts(spread_image(True), smooth=S.KINKED, lipschitz=True,
                     precision_sensitive=True),
               dtype=rules.floating, extra=(Arg("correction", NUMBER, 0),)),
    Op("count", (Arg("m"), Arg("dim", DIMS, None), Arg("where", MASK, None),
                 Arg("keepdim", FLAG, False)),
       rules.reduced, rules.counted, "reduce_count", "reduction",
       facts=replace(STEP, interval=count_image), accumulate="sum"),
    Op("argmax", (Arg("x"), Arg("dim", DIM), Arg("keepdim", FLAG, False)),
       rules.reduced_one, rules.integer, "argmax", "reduction",
       facts=replace(STEP, interval=lambda args, attrs: iv.argmax_of()), mixes=True),
    # distributions
    Op("softmax", (Arg("x"), Arg("dim", DIM)), rules.along_one_dim, rules.floating,
       "torch.softmax", "distribution",
       facts=Facts(lambda args, attrs: iv.softmax_of(args[0], max_count(attrs)),
                   lipschitz=True, precision_sensitive=True), mixes=True),
    Op("log_softmax", (Arg("x"), Arg("dim", DIM)), rules.along_one_dim, rules.floating,
       "torch.log_softmax", "distribution",
       facts=Facts(lambda args, attrs: iv.log_softmax_of(args[0], max_count(attrs)),
                   curvature=atom(CONCAVE, dcp.NONMONOTONE), lipschitz=True,
                   precision_sensitive=True), mixes=True),
    Op("entropy", (Arg("x"), Arg("dim", DIM)), rules.without_dim, rules.floating,
       "entropy", "distribution", doc="entropy of softmax(x, dim)",
       facts=Facts(entropy_image, lipschitz=True, precision_sensitive=True), mixes=True),
    Op("gather", (Arg("x"), Arg("index"), Arg("dim", DIM)), rules.gathered, rules.index_into,
       "gather", "distribution",
       facts=Facts(gather_image, curvature=atom(AFFINE, INC, dcp.NONMONOTONE), lipschitz=True),
       mixes=True),
    Op("one_hot", (Arg("index"), Arg("n", SIZE)), rules.one_hot_dims, rules.int_index,
       "one_hot", "distribution",
       facts=Facts(lambda args, attrs: iv.UNIT, smooth=S.CONSTANT)),
    # contraction and norms
    Op("matmul", (Arg("a"), Arg("b"), Arg("dim", DIM)), rules.contracted, rules.floating,
       "matmul", "distribution",
       doc="the sum over dim K of a·b: a's dims without K, then b's other dims",
       facts=Facts(matmul_image, curvature=product_curvature, partials=product_partials,
                   precision_sensitive=True), mixes=True),
    Op("norm", (Arg("x"), Arg("dim", DIMS, None), Arg("keepdim", FLAG, False)),
       rules.reduced, rules.floating, "norm", "distribution",
       doc="the Euclidean norm over dim (everything when omitted)",
       facts=Facts(norm_image, curvature=atom(CONVEX, ABS_INC), smooth=S.KINKED, kinks=(0.0,),
                   lipschitz=True, steep=steep_at_zero, precision_sensitive=True,
                   steep_message="norm() has no gradient at 0, which its argument can reach "
                                 "(it lies in {interval}): the gradient x/norm(x) jumps there "
                                 "(torch returns 0)",
                   steep_fix="if a smooth gradient at 0 matters, "
                             "sqrt(sum(square({x})) + 1e-12)"), mixes=True),
    Op("normalize", (Arg("x"), Arg("dim", DIMS, None), Arg("eps", NUMBER, 1e-12)),
       rules.normalized, rules.floating, "normalize", "distribution",
       doc="x / max(norm(x, dim, keepdim=true), eps), as F.normalize",
       facts=Facts(normalize_image, steep=steep_at_zero, precision_sensitive=True,
                   steep_message="normalize() has a gradient as large as 1/eps near 0, which "
                                 "its argument can reach (it lies in {interval})",
                   steep_fix="a larger eps, e.g. normalize({x}, eps=1e-6)"), mixes=True),
    # orders and positions along a dim
    Op("sort", (Arg("x"), Arg("dim", DIM), Arg("descending", FLAG, False)),
       rules.along_one_dim, rules.same_kind, "sort", "distribution",
       doc="the values along dim in increasing order (decreasing with descending=true)",
       facts=Facts(gather_image, smooth=S.KINKED, lipschitz=True), mixes=True),
    Op("cumsum", (Arg("x"), Arg("dim", DIM)), rules.along_one_dim, rules.sum_kind, "cumsum",
       "distribution", doc="the running sum along dim: entry i sums entries 0 … i",
       facts=Facts(cumsum_image, curvature=atom(AFFINE, INC), lipschitz=True,
                   precision_sensitive=True), mixes=True),
    Op("rename", (Arg("x"), Arg("dim", DIM), Arg("to", NEW_DIM)), rules.renamed,
       rules.same_kind, "rename", "shape",
       doc="x with dim called `to`, a new dim of the same size (a second copy of a batch)",
       facts=Facts(gather_image, curvature=atom(AFFINE, INC), lipschitz=True),
       mixes=True),
    # data parallel (backend/collectives.py)
    Op("global_sum", X, rules.same_as_broadcast, rules.floating, "global_sum", "reduction",
       doc="the sum of x over the ranks of the data-parallel group (x without gradient)",
       facts=Facts(lambda args, attrs: iv.sum_of(args[0], max_count=max_count(attrs)),
                   curvature=atom(AFFINE, INC))),
    Op("world_size", (), rules.scalar, rules.floating, "world_size", "shape",
       doc="the number of ranks of the data-parallel group (1 without one)",
       facts=Facts(size_image, smooth=S.CONSTANT)),
    # state (ir/state.py: the node reads the average and the count of calls it keeps)
    Op("ema", (Arg("x"), Arg("decay", NUMBER)), rules.scalar, rules.floating, "ema", "state",
       doc="the bias-corrected moving average of the scalar x over the training calls",
       facts=Facts(constant_image, curvature=detached, smooth=S.CONSTANT, lipschitz=True)),
    # shapes
    Op("index", (Arg("dim", DIM),), rules.positions, rules.integer, "index", "shape",
       doc="the positions 0 … size(D) - 1 of a dim, int[D]",
       facts=Facts(index_image, smooth=S.CONSTANT)),
    Op("size", (Arg("dim", DIM),), rules.scalar, rules.floating, "size", "shape",
       doc="the size of a dim, as a scalar", facts=Facts(size_image, smooth=S.CONSTANT)),
    # schedules of `step`
    _schedule("constant", (Arg("value"),), Facts(constant_image, lipschitz=True),
              "the value at every step"),
    _schedule("linear", (Arg("start"), Arg("end"), *_SPAN), Facts(linear_image),
              "start + (end - start)·u, u = clamp((step - begin) / steps, 0, 1)"),
    _schedule("cosine", (Arg("start"), Arg("end"), *_SPAN), Facts(linear_image),
              "end + (start - end)·(1 + cos(π·u))/2"),
    _schedule("exponential", (Arg("start"), Arg("end"), *_SPAN),
              Facts(exponential_image, exponential_domain,
                    fix="give `{x}` a range without 0, e.g. `in [1e-8, 1]`, or use linear(…)"),
              "start·(end/start)^u (geometric)"),
    _schedule("warmup", (Arg("steps"),), Facts(unit_image), "clamp(step / steps, 0, 1)"),
    _schedule("piecewise", (Arg("boundaries", NUMBERS), Arg("values", NUMBERS)),
              Facts(piecewise_image),
              "v0 before s1, v1 from s1, …, the last value from the last boundary on"),
]
# fmt: on


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

# Ops that exist only as operators (`a + b`, `not c`), never as calls.
OPERATOR_ONLY = set(BINARY_OPERATORS.values()) | set(UNARY_OPERATORS.values())
# ... and those the builder reaches only through `min`/`max` with two arguments.
# ... and those behind a built-in value name (`world_size`), never called.
VALUE_OPS = {"world_size"}
NOT_CALLABLE = OPERATOR_ONLY | set(ELEMENTWISE_FORM.values()) | VALUE_OPS

# Names reserved for later versions (LANGUAGE.md "Coming later").
RESERVED: dict[str, str] = {}

CALLABLE_NAMES = sorted(set(OPS) - NOT_CALLABLE | {"select"})
