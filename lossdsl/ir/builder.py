"""AST to IR: names resolved, `use`d defs brought in, defs inlined, dims and types checked.

Every user mistake becomes a diagnostic (E101–E106, E200–E204); building goes on past
each one, so a spec's errors are reported together. The work is split by concern:

- graph.py: the node table, diagnostics and scopes the parts share;
- declarations.py: defs, names, inputs and dims, static choices, the build order;
- expressions.py and calls.py: expressions, op calls, def inlining, `select`;
- objective.py: `minimize` in its normal form;
- state.py: states, `ema` and learned params.

This module drives them: declarations first, then every param, state, let, term and metric
(each after the values it mentions), then the states' updates, then the objective.
"""

from __future__ import annotations

from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.ir.declarations import Symbols, literal_number, show_number
from lossdsl.ir.expressions import Expressions
from lossdsl.ir.graph import SCALAR_FLOAT, Failed, Graph, Scope
from lossdsl.ir.model import NamedValue, ParamSpec, SpecIR
from lossdsl.ir.objective import Objective
from lossdsl.syntax import ast


def build(
    spec: ast.SpecAST, used: list[ast.SpecAST], choices: dict[str, str] | None = None
) -> tuple[SpecIR | None, list[Diagnostic]]:
    """Build the IR of `spec`; `choices` overrides static-choice params."""
    builder = _Builder(spec, used, choices or {})
    ir = builder.run()
    return ir, builder.graph.diagnostics


class _Builder:
    def __init__(self, spec: ast.SpecAST, used: list[ast.SpecAST], choices: dict[str, str]):
        self.graph = Graph()
        self.symbols = Symbols(self.graph, spec, used, choices)
        self.expressions = Expressions(self.graph, self.symbols, self.value_of)
        self.objective = Objective(self.graph, self.symbols, self.expressions)
        self.params: list[ParamSpec] = []
        self.in_progress: list[str] = []  # values being built (a cycle the order missed)

    def run(self) -> SpecIR | None:
        symbols = self.symbols
        symbols.collect_defs()
        symbols.collect_values()
        symbols.declare_step()
        symbols.declare_inputs()
        symbols.declare_new_dims()
        symbols.declare_choices()
        for decl in symbols.build_order():
            self.value_of(decl.name, decl.name_span, Scope())
        named = {"let": [], "term": [], "metric": []}  # type: dict[str, list[NamedValue]]
        for decl in symbols.decls(ast.ValueDecl):
            node = self.value_of(decl.name, decl.name_span, Scope())
            if node is not None:
                named[decl.kind].append(NamedValue(name=decl.name, node=node, span=decl.span))
        states = self.expressions.states
        states.build_updates()
        self.objective.check_terms(named["term"])
        weights, objective_span = self.objective.objective(named["term"])
        if any(d.severity == "error" for d in self.graph.diagnostics):
            return None
        return SpecIR(
            name=symbols.spec.name,
            doc=symbols.spec.doc,
            file=symbols.spec.file,
            nodes=tuple(self.graph.nodes),
            inputs=tuple(symbols.inputs),
            params=tuple(self.params),
            choices=tuple(symbols.choices.values()),
            lets=tuple(named["let"]),
            terms=tuple(named["term"]),
            metrics=tuple(named["metric"]),
            weights=weights,
            objective_span=objective_span,
            dims=tuple(symbols.dims),
            step_node=symbols.step_node,
            states=tuple(states.states),
            learned=tuple(states.learned),
            emas=tuple(states.emas),
        )

    def value_of(self, name: str, span: Span, scope: Scope) -> int | None:
        """The node of a spec-level value, building lets, terms and params on first use."""
        if name in self.symbols.value_nodes:
            return self.symbols.value_nodes[name]
        if name in self.symbols.failed:
            return None  # its error was reported where it is defined
        decl = self.symbols.values.get(name)
        if decl is None or isinstance(decl, ast.InputDecl):
            return None
        if name in self.in_progress:
            members = self.in_progress[self.in_progress.index(name) :]
            cycle = " -> ".join([*members, name])
            self.graph.error("E106", f"`{name}` is defined in terms of itself: {cycle}", span)
            self.symbols.failed.update(members)
            raise Failed
        self.in_progress.append(name)
        states = self.expressions.states
        states.building.append(name)
        try:
            if isinstance(decl, ast.ParamDecl) and decl.learned:
                node = states.declare_learned(decl)
            elif isinstance(decl, ast.ParamDecl):
                node = self.declare_param(decl)
            elif isinstance(decl, ast.StateDecl):
                node = states.declare_state(decl)
            else:
                assert isinstance(decl, ast.ValueDecl)
                body = self.expressions.expr(decl.value, Scope())
                node = self.named(body, name, decl.kind)
        except Failed:
            self.symbols.failed.add(name)
            return None
        finally:
            self.in_progress.remove(name)
            states.building.pop()
        self.symbols.value_nodes[name] = node
        return node

    def declare_param(self, decl: ast.ParamDecl) -> int:
        assert decl.value is not None
        default_node = self.expressions.expr(decl.value, Scope(params_only=True))
        rng = self.symbols.range_spec(decl.range)
        default = literal_number(decl.value)
        if default is None:
            folded = self.graph.fold(default_node)
            default = folded if self.graph.type_of(default_node).dims == () else None
            if folded is None:
                default = None
        outside = rng is not None and not rng.is_empty() and default is not None
        if outside and rng is not None and default is not None and not rng.contains(default):
            self.graph.error(
                "E204",
                f"param `{decl.name}` = {show_number(default)} is outside its range {rng}",
                decl.value.span,
                fix=f"choose a value in {rng}",
            )
        if self.graph.type_of(default_node).dims != ():
            self.graph.error("E201", f"param `{decl.name}` must be a scalar", decl.value.span)
        self.graph.check_finite(default_node, f"the value of param `{decl.name}`")
        node = self.graph.add(
            "param", (), {"name": decl.name}, SCALAR_FLOAT, decl.name_span, name=decl.name
        )
        self.params.append(
            ParamSpec(
                name=decl.name,
                node=node,
                default=default,
                default_node=default_node,
                range=rng,
                span=decl.span,
            )
        )
        return node

    def named(self, node_id: int, name: str, kind: str) -> int:
        """Give a node the spec's name (a fresh alias when the node already has one)."""
        node = self.graph.nodes[node_id]
        if node.name is None and node.op not in ("input", "param", "step"):
            self.graph.nodes[node_id] = node.model_copy(update={"name": name})
            return node_id
        return self.graph.add("alias", (node_id,), {}, node.type, node.span, name=name)
