"""Write docs/stdlib.md: every standard spec with its inputs, params and, per term, the
properties `lossdsl check` proves. `python scripts/stdlib_doc.py > docs/stdlib.md`;
tests/test_stdlib_doc.py keeps the committed page in step with the analysis."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from lossdsl.passes import check_reference
from lossdsl.resources import stdlib_dir, stdlib_index

HEADER = """# The standard library

Every spec in `specs/`, by the name `lossdsl.load(NAME)` and `use NAME` take. The
properties are what `lossdsl check` proves over the declared ranges, per term, with
respect to the `grad` inputs (see [Properties](language.md#properties)): they are regenerated
from the analysis by `python scripts/stdlib_doc.py > docs/stdlib.md`, and a test fails
when this page and the analysis disagree.
"""


def framework_losses() -> ModuleType:
    """scripts/framework_losses.py, the comparison table, loaded beside this script."""
    path = Path(__file__).with_name("framework_losses.py")
    spec = importlib.util.spec_from_file_location("framework_losses", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render() -> str:
    parts = [HEADER]
    root = stdlib_dir()
    for name, path in stdlib_index().items():
        checked = check_reference(name)
        ir = checked.raise_for_errors()
        folder = path.parent.relative_to(root)
        title = name if str(folder) == "." else f"{folder}/{name}"
        summary = (ir.doc or "").strip().splitlines()[0] if ir.doc else ""
        parts.append(f"## `{title}`\n\n{summary}\n")
        if ir.inputs:
            shown = ", ".join(
                f"`{i.name}: {i.dtype}[{', '.join(map(str, i.dims))}]`"
                + (" grad" if i.grad else "")
                for i in ir.inputs
            )
            parts.append(f"Inputs: {shown}.\n")
        params = [
            f"`{p.name}` = {p.default if p.default is not None else 'schedule'}"
            + (f" in {p.range}" if p.range else "")
            for p in ir.params
        ]
        params += [f'`{c.name}` = "{c.value}" in {{{", ".join(c.choices)}}}' for c in ir.choices]
        if params:
            parts.append(f"Params: {', '.join(params)}.\n")
        warnings = sorted({d.code for d in checked.diagnostics if d.severity == "warning"})
        if warnings:
            parts.append(f"Warnings by design: {', '.join(warnings)} (see the spec).\n")
        if ir.properties:
            parts.append(
                "| term | bounds | convex | gradient bounded | differentiable | continuous |"
            )
            parts.append("|---|---|---|---|---|---|")
            for term, found in ir.properties.items():
                parts.append(
                    f"| `{term}` | `{found['bounds']}` | {found['convex']} | "
                    f"{found['gradient_bounded']} | {found['differentiable']} | "
                    f"{found['continuous']} |"
                )
            parts.append("")
    parts.append(framework_losses().render())
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
