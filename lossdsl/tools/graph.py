"""`lossdsl graph`: the IR as a picture. One graph node per IR node, labelled with the spec's
names; inputs (`grad` ones apart), params, terms and metrics in their own colours; nodes with a
numerical hazard (W3xx) outlined in red with the warning as their tooltip.

`.dot` is Graphviz's text; `.svg` is drawn by Graphviz's `dot` when it is installed, else by a
small layered layout of our own (rows by depth, ordered to cross few edges), so the command
needs no system package.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lossdsl.diagnostics import Diagnostic
from lossdsl.ir import Node, SpecIR
from lossdsl.tools import ToolError

# role -> (fill colour, Graphviz shape)
STYLES = {
    "grad input": ("#ffd8a8", "box"),
    "input": ("#d0ebff", "box"),
    "param": ("#c3fae8", "ellipse"),
    "step": ("#c3fae8", "ellipse"),
    "term": ("#b2f2bb", "doubleoctagon"),
    "metric": ("#eebefa", "octagon"),
    "constant": ("#f1f3f5", "plaintext"),
    "value": ("#ffffff", "box"),
}
HAZARD_COLOUR = "#e03131"


@dataclass(frozen=True)
class GraphNode:
    id: int
    label: str
    role: str
    hazard: str | None  # the warning(s) at this node


def graph_nodes(ir: SpecIR, diagnostics: list[Diagnostic]) -> list[GraphNode]:
    terms = {t.node for t in ir.terms}
    metrics = {m.node for m in ir.metrics}
    grads = {i.node for i in ir.inputs if i.grad}
    hazards: dict[tuple[str, int, int], list[str]] = {}
    for d in diagnostics:
        if d.code.startswith("W3"):
            hazards.setdefault((d.span.file, d.span.line, d.span.col), []).append(
                f"{d.code} {d.message}"
            )
    found = []
    for node in ir.nodes:
        span = node.origin.span if node.origin is not None else node.span
        hazard = hazards.get((span.file, span.line, span.col))
        if hazard and node.op in ("input", "param", "const", "step", "alias"):
            hazard = None  # a hazard belongs to the op at that place, not to a leaf there
        found.append(
            GraphNode(node.id, _label(node), _role(node, terms, metrics, grads), _join(hazard))
        )
    return found


def _join(messages: list[str] | None) -> str | None:
    return "\n".join(messages) if messages else None


def _role(node: Node, terms: set[int], metrics: set[int], grads: set[int]) -> str:
    if node.id in terms:
        return "term"
    if node.id in metrics:
        return "metric"
    if node.op == "input":
        return "grad input" if node.id in grads else "input"
    if node.op in ("param", "step"):
        return node.op
    if node.op == "const":
        return "constant"
    return "value"


def _label(node: Node) -> str:
    if node.op == "const":
        value = node.attrs.get("value")
        return f"{value:g}" if isinstance(value, float) else str(value)
    if node.op in ("input", "param", "step", "state", "learned"):
        head = node.name or node.attrs.get("name") or node.op
    else:
        attrs = ", ".join(
            f"{k}={_attr(v)}"
            for k, v in node.attrs.items()
            if k not in ("present", "name") and v is not None and v is not False
        )
        call = f"{node.op}({attrs})" if attrs else node.op
        head = f"{node.name} = {call}" if node.name else call
    return f"{head}\n{node.type}"


def _attr(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


# ---- Graphviz text -----------------------------------------------------------------------


def dot_source(ir: SpecIR, diagnostics: list[Diagnostic]) -> str:
    lines = [
        f'digraph "{ir.name}" {{',
        "  rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=10, style=filled];',
        '  edge [color="#868e96"];',
    ]
    for node in graph_nodes(ir, diagnostics):
        fill, shape = STYLES[node.role]
        attrs = [
            f'label="{_dot_escape(node.label)}"',
            f"shape={shape}",
            f'fillcolor="{fill}"',
            f'class="{node.role.replace(" ", "-")}"',
        ]
        if node.hazard:
            attrs += [f'color="{HAZARD_COLOUR}"', "penwidth=2.5"]
            attrs.append(f'tooltip="{_dot_escape(node.hazard)}"')
        lines.append(f"  n{node.id} [{', '.join(attrs)}];")
    for node in ir.nodes:
        for arg in dict.fromkeys(node.args):
            lines.append(f"  n{arg} -> n{node.id};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# ---- SVG of our own ------------------------------------------------------------------------

CHAR_WIDTH = 7.0
LINE_HEIGHT = 14.0
ROW_GAP = 50.0
COLUMN_GAP = 24.0
MARGIN = 20.0


def svg_source(ir: SpecIR, diagnostics: list[Diagnostic]) -> str:
    """A layered drawing: a node's row is its depth (the longest path from a leaf), each row
    ordered by the mean position of the arguments above it."""
    nodes = {n.id: n for n in graph_nodes(ir, diagnostics)}
    depth: dict[int, int] = {}
    for node in ir.nodes:  # the table is in SSA order: arguments come first
        depth[node.id] = 1 + max((depth[a] for a in node.args), default=-1)
    rows: dict[int, list[int]] = {}
    for node_id, row in depth.items():
        rows.setdefault(row, []).append(node_id)
    size = {i: _box(n.label) for i, n in nodes.items()}
    x: dict[int, float] = {}
    y: dict[int, float] = {}
    top = MARGIN
    width = 0.0
    for row in sorted(rows):
        members = rows[row]
        if row:
            members.sort(key=lambda i: _barycentre(ir.node(i).args, x, i))
        left = MARGIN
        height = max(size[i][1] for i in members)
        for node_id in members:
            w, h = size[node_id]
            x[node_id] = left + w / 2
            y[node_id] = top + height / 2
            left += w + COLUMN_GAP
        width = max(width, left)
        top += height + ROW_GAP
    top += MARGIN - ROW_GAP
    width += MARGIN - COLUMN_GAP
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{width:.0f}" height="{top:.0f}" viewBox="0 0 {width:.0f} {top:.0f}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="11">',
        f"<title>{html.escape(ir.name)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#868e96"/>'
        "</marker></defs>",
    ]
    for node in ir.nodes:
        for arg in dict.fromkeys(node.args):
            x1, y1 = x[arg], y[arg] + size[arg][1] / 2
            x2, y2 = x[node.id], y[node.id] - size[node.id][1] / 2
            middle = (y1 + y2) / 2
            parts.append(
                f'<path class="edge" d="M{x1:.1f},{y1:.1f} C{x1:.1f},{middle:.1f} '
                f'{x2:.1f},{middle:.1f} {x2:.1f},{y2:.1f}" fill="none" stroke="#868e96" '
                'marker-end="url(#arrow)"/>'
            )
    for node_id, node in nodes.items():
        parts.append(_svg_node(node, x[node_id], y[node_id], *size[node_id]))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _box(label: str) -> tuple[float, float]:
    lines = label.split("\n")
    return max(len(line) for line in lines) * CHAR_WIDTH + 16, len(lines) * LINE_HEIGHT + 10


def _barycentre(args: tuple[int, ...], x: dict[int, float], node_id: int) -> tuple[float, int]:
    placed = [x[a] for a in args if a in x]
    return (sum(placed) / len(placed) if placed else 0.0, node_id)


def _svg_node(node: GraphNode, cx: float, cy: float, w: float, h: float) -> str:
    fill, shape = STYLES[node.role]
    stroke, width = (HAZARD_COLOUR, 2.5) if node.hazard else ("#495057", 1.0)
    classes = "node hazard" if node.hazard else "node"
    rx = h / 2 if shape == "ellipse" else (2 if shape != "plaintext" else 0)
    border = "none" if shape == "plaintext" and not node.hazard else stroke
    tooltip = node.label.replace("\n", " : ") + (f"\n{node.hazard}" if node.hazard else "")
    lines = node.label.split("\n")
    first_y = cy - (len(lines) - 1) * LINE_HEIGHT / 2 + 4
    text = "".join(
        f'<text x="{cx:.1f}" y="{first_y + i * LINE_HEIGHT:.1f}" text-anchor="middle"'
        + (' font-weight="bold"' if i == 0 else "")
        + f">{html.escape(line)}</text>"
        for i, line in enumerate(lines)
    )
    double = ""
    if node.role == "term":
        double = (
            f'<rect x="{cx - w / 2 - 3:.1f}" y="{cy - h / 2 - 3:.1f}" width="{w + 6:.1f}" '
            f'height="{h + 6:.1f}" rx="4" fill="none" stroke="{stroke}" stroke-width="{width}"/>'
        )
    return (
        f'<g class="{classes}" id="node{node.id}" data-role="{node.role}">'
        f"<title>{html.escape(tooltip)}</title>{double}"
        f'<rect x="{cx - w / 2:.1f}" y="{cy - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'rx="{rx:.1f}" fill="{fill}" stroke="{border}" stroke-width="{width}"/>{text}</g>'
    )


# ---- writing it -------------------------------------------------------------------------------


def render(ir: SpecIR, diagnostics: list[Diagnostic], suffix: str, renderer: str = "auto") -> str:
    """The graph as `.dot` or `.svg` text. `renderer`: "dot" (Graphviz, required), "builtin",
    or "auto" (Graphviz when `dot` is on the PATH)."""
    if suffix == ".dot":
        return dot_source(ir, diagnostics)
    if suffix != ".svg":
        raise ToolError(f"the graph is written as .svg or .dot, not {suffix or 'a bare name'}")
    if renderer not in ("auto", "dot", "builtin"):
        raise ToolError(f"--renderer is auto, dot or builtin, not {renderer!r}")
    dot = shutil.which("dot") if renderer != "builtin" else None
    if dot is None:
        if renderer == "dot":
            raise ToolError("--renderer dot needs Graphviz's `dot` on the PATH")
        return svg_source(ir, diagnostics)
    try:
        done = subprocess.run(
            [dot, "-Tsvg"],
            input=dot_source(ir, diagnostics),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ToolError(f"Graphviz's dot failed: {error}") from None
    if done.returncode != 0:
        raise ToolError(f"Graphviz's dot failed: {done.stderr.strip()}")
    return done.stdout


def write_graph(
    ir: SpecIR,
    diagnostics: list[Diagnostic],
    path: Path,
    renderer: str = "auto",
    inputs: list[Path] | None = None,
) -> None:
    from lossdsl.tools.outputs import check_output, write_text_output

    check_output(path, (".svg", ".dot"), inputs or [])
    write_text_output(path, render(ir, diagnostics, path.suffix, renderer))
