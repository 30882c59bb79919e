"""The objective in its normal form: `minimize` as a weighted sum of terms, one weight node
per term (0 for a term left out, 1 each when `minimize` is omitted), E203 for anything
else, E202 for a term that is not a scalar, E204 for a weight that is not finite.
"""

from __future__ import annotations

from lossdsl.diagnostics import Span
from lossdsl.ir import trampoline
from lossdsl.ir.declarations import Symbols
from lossdsl.ir.expressions import Expressions
from lossdsl.ir.graph import SCALAR_FLOAT, Failed, Graph, Scope
from lossdsl.ir.model import NamedValue
from lossdsl.ir.trampoline import Walk
from lossdsl.ops import OPS
from lossdsl.syntax import ast


class Objective:
    """The terms' checks and the weights of the objective, for one spec."""

    def __init__(self, graph: Graph, symbols: Symbols, expressions: Expressions):
        self.graph = graph
        self.symbols = symbols
        self.expressions = expressions
        self.mentioning: dict[int, bool] = {}  # id() of an objective's part: mentions a term

    def check_terms(self, terms: list[NamedValue]) -> None:
        for term in terms:
            t = self.graph.type_of(term.node)
            if not t.is_scalar:
                self.graph.error(
                    "E202",
                    f"term `{term.name}` is {t}, not a scalar",
                    term.span,
                    fix="reduce it, e.g. `mean(…)` or `sum(…, dim=…)`",
                )

    def objective(self, terms: list[NamedValue]) -> tuple[dict[str, int], Span | None]:
        term_nodes = {t.name: t.node for t in terms}
        minimize = self.symbols.decls(ast.Minimize)
        for extra in minimize[1:]:
            self.graph.error("E102", "`minimize` is given twice", extra.span)
        if not minimize:
            ones = {
                n: self.graph.add(
                    "const", (), {"value": 1.0}, SCALAR_FLOAT, self.symbols.spec.name_span
                )
                for n in term_nodes
            }
            return ones, None
        decl = minimize[0]
        try:
            declared = {d.name for d in self.symbols.decls(ast.ValueDecl) if d.kind == "term"}
            walk = self.linear_combination(decl.objective, term_nodes, declared)
            combination = trampoline.run(walk)
        except Failed:
            return {}, decl.span
        weights = {}
        for name in term_nodes:
            if name in combination:
                weights[name] = combination[name]
                self.graph.check_finite(combination[name], f"the weight of term `{name}`")
            else:
                weights[name] = self.graph.add("const", (), {"value": 0.0}, SCALAR_FLOAT, decl.span)
        return weights, decl.span

    def linear_combination(
        self, e: ast.Expr, terms: dict[str, int], declared: set[str]
    ) -> Walk[dict[str, int]]:
        """`w1 * t1 + w2 * t2 - …` as {term: weight node}; E203 for anything else."""
        if isinstance(e, ast.Name) and e.id in declared:
            if e.id not in terms:
                raise Failed  # the term itself had an error, already reported
            return {e.id: self.graph.constant(1.0, e.span)}
        if not self.mentions(e, declared):
            if isinstance(e, ast.Name) and e.id in self.symbols.values and e.id not in terms:
                what = type(self.symbols.values[e.id]).__name__
                self.graph.error(
                    "E203",
                    f"`{e.id}` is not a term; minimize a weighted sum of terms",
                    e.span,
                    notes=(f"`{e.id}` is declared as {what}",),
                    fix=f"declare it with `term {e.id} = …`",
                )
            else:
                self.graph.error(
                    "E203",
                    "a constant offset in `minimize`: the objective must be a "
                    "weighted sum of terms",
                    e.span,
                    fix="drop the constant",
                )
            raise Failed
        if isinstance(e, ast.Unary) and e.op == "-":
            inner = yield self.linear_combination(e.operand, terms, declared)
            return {t: self.scaled(w, -1.0, e.span) for t, w in inner.items()}
        if isinstance(e, ast.Binary) and e.op in "+-":
            left = yield self.linear_combination(e.left, terms, declared)
            right = yield self.linear_combination(e.right, terms, declared)
            smaller, larger = sorted((left, right), key=len)  # a long sum grows on one side
            twice = [t for t in smaller if t in larger]
            if twice:
                self.graph.error(
                    "E203",
                    f"term `{sorted(twice)[0]}` appears twice in `minimize`",
                    e.right.span,
                    fix="combine its weights into one",
                )
                raise Failed
            if e.op == "-":
                right = {t: self.scaled(w, -1.0, e.span) for t, w in right.items()}
            smaller, larger = sorted((left, right), key=len)
            larger.update(smaller)  # the order of terms is the declarations', set by the caller
            return larger
        if isinstance(e, ast.Binary) and e.op in "*/":
            weight_side, term_side = (e.left, e.right) if e.op == "*" else (e.right, e.left)
            if e.op == "*" and self.mentions(e.left, declared):
                weight_side, term_side = e.right, e.left
            if self.mentions(weight_side, declared):
                self.graph.error(
                    "E203",
                    "a product of terms in `minimize`: the objective must be a "
                    "weighted sum of terms",
                    e.span,
                )
                raise Failed
            weight_scope = Scope(params_only=True, misuse_code="E203", adaptive=True)
            weight = self.expressions.expr(weight_side, weight_scope)
            if self.graph.type_of(weight).dims != ():
                self.graph.error("E203", "a weight must be a scalar", weight_side.span)
                raise Failed
            if e.op == "/":
                one = self.graph.constant(1.0, e.span)
                weight = self.expressions.apply(
                    OPS["div"], [one, weight], {}, weight_side.span, Scope()
                )
            inner = yield self.linear_combination(term_side, terms, declared)
            return {t: self.times(weight, w, e.span) for t, w in inner.items()}
        self.graph.error(
            "E203",
            "`minimize` must be a weighted sum of terms (w1 * t1 + w2 * t2 …); "
            "a function of terms is not",
            e.span,
        )
        raise Failed

    def mentions(self, e: ast.Expr, names: set[str]) -> bool:
        """Whether `e` mentions one of `names` (the terms); remembered for every part of `e`,
        so asking again for each part of a long sum costs nothing."""
        if id(e) not in self.mentioning:
            for part in reversed(list(ast.walk(e))):  # every part after the parts inside it
                if id(part) not in self.mentioning:
                    inside = ast.children(part)
                    self.mentioning[id(part)] = (
                        isinstance(part, ast.Name) and part.id in names
                    ) or any(self.mentioning[id(c)] for c in inside)
        return self.mentioning[id(e)]

    def times(self, weight: int, other: int, span: Span) -> int:
        """weight * other, leaving out a factor of exactly 1."""
        for a, b in ((weight, other), (other, weight)):
            if self.graph.nodes[b].op == "const" and self.graph.nodes[b].attrs["value"] == 1:
                return a
        return self.expressions.apply(OPS["mul"], [weight, other], {}, span, Scope())

    def scaled(self, weight: int, factor: float, span: Span) -> int:
        if self.graph.nodes[weight].op == "const":
            value = self.graph.nodes[weight].attrs["value"] * factor
            return self.graph.constant(value, span)
        return self.times(self.graph.constant(factor, span), weight, span)
