"""`lossdsl graph`: one drawn node per IR node, roles apart, hazards highlighted."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossdsl.cli import app
from lossdsl.passes import check_reference
from lossdsl.tools import ToolError
from lossdsl.tools.graph import HAZARD_COLOUR, STYLES, dot_source, render, svg_source

SVG = "{http://www.w3.org/2000/svg}"
RISKY = """
loss risky
input p : float[N] grad in [0, 1]
input y : float[N]
param w = 0.5
term fit = mean(square(p - y))
term nll = -mean(log(p))
minimize fit + w * nll
metric worst = max(abs(p - y))
"""


def drawn_nodes(svg: str) -> list[ElementTree.Element]:
    root = ElementTree.fromstring(svg)
    return [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()]


@pytest.mark.parametrize("spec", ["ppo", "dpo", "huber"])
def test_the_builtin_svg_draws_one_node_per_ir_node(spec: str) -> None:
    checked = check_reference(spec)
    assert checked.ir is not None
    svg = svg_source(checked.ir, checked.diagnostics)
    nodes = drawn_nodes(svg)
    assert sorted(int(g.get("id", "")[4:]) for g in nodes) == [n.id for n in checked.ir.nodes]
    edges = sum(len(set(n.args)) for n in checked.ir.nodes)
    assert svg.count('class="edge"') == edges


def test_the_svg_has_one_node_per_ir_node_whichever_renderer_draws_it() -> None:
    """With Graphviz installed `dot` draws it (its nodes are `<g class="node">` too); without
    it, the builtin layout does."""
    checked = check_reference("ppo")
    assert checked.ir is not None
    svg = render(checked.ir, checked.diagnostics, ".svg", "auto")
    assert len(drawn_nodes(svg)) == len(checked.ir.nodes)
    width = ElementTree.fromstring(svg).get("width", "")
    assert float(re.sub(r"[a-z]+$", "", width)) > 200


def test_roles_and_hazards_are_drawn_apart(write_spec: Callable[..., Path]) -> None:
    checked = check_reference(write_spec(RISKY))
    assert checked.ir is not None and any(d.code == "W300" for d in checked.diagnostics)
    nodes = {g.get("id"): g for g in drawn_nodes(svg_source(checked.ir, checked.diagnostics))}
    ir = checked.ir
    roles = {g.get("data-role") for g in nodes.values()}
    assert {"grad input", "input", "param", "term", "metric", "constant"} <= roles
    (hazard,) = [g for g in nodes.values() if "hazard" in g.get("class", "")]
    log = next(n for n in ir.nodes if n.op == "log")
    assert hazard.get("id") == f"node{log.id}"
    assert "W300" in (hazard.find(f"{SVG}title").text or "")
    assert HAZARD_COLOUR in ElementTree.tostring(hazard, encoding="unicode")
    dot = dot_source(ir, checked.diagnostics)
    term = next(t for t in ir.terms if t.name == "fit")
    assert re.search(rf'n{term.node} \[label="fit = mean[^"]*", shape=doubleoctagon', dot)
    assert f'n{log.id} [label="log\\nfloat[N]"' in dot and f'color="{HAZARD_COLOUR}"' in dot
    assert f'fillcolor="{STYLES["grad input"][0]}"' in dot


def test_the_command_writes_dot_and_svg(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    spec = write_spec(RISKY)
    runner = CliRunner()
    for name in ("risky.dot", "risky.svg"):
        result = runner.invoke(app, ["graph", str(spec), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert (tmp_path / name).stat().st_size > 500
    assert (tmp_path / "risky.dot").read_text().startswith('digraph "risky" {')
    again = runner.invoke(app, ["graph", str(spec), "-o", str(tmp_path / "risky.svg")])
    assert again.exit_code == 0  # a drawing is redrawn in place
    refused = runner.invoke(app, ["graph", str(spec), "-o", str(spec)])
    assert refused.exit_code == 2 and "a .svg or .dot file" in refused.output
    png = runner.invoke(app, ["graph", str(spec), "-o", str(tmp_path / "g.png")])
    assert png.exit_code == 2


def test_asking_for_graphviz_without_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = check_reference("huber")
    assert checked.ir is not None
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ToolError, match="needs Graphviz"):
        render(checked.ir, checked.diagnostics, ".svg", "dot")
    assert len(drawn_nodes(render(checked.ir, [], ".svg", "auto"))) == len(checked.ir.nodes)
