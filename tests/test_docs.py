"""docs/language.md is the complete reference, and the docs stand on their own.

Checked here: every op of the op table and every declaration keyword is documented; every
operator is in the operators table; every complete spec on the page (a code block fenced
as ```loss) checks clean; every op example, appended as a metric to the page's examples
spec, checks clean and calls its op; nothing in README.md or docs/ points outside the
repository, and their links between pages and to headings resolve.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lossdsl.ops.table import (
    BINARY_OPERATORS,
    CALLABLE_NAMES,
    ELEMENTWISE_FORM,
    OPERATOR_ONLY,
    OPS,
    UNARY_OPERATORS,
    VALUE_OPS,
)
from lossdsl.passes import check_text
from lossdsl.syntax.parser import DECLARATION_KEYWORDS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LANGUAGE = DOCS / "language.md"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

COMPLETE_SPEC = re.compile(r"^```loss\n(.*?)^```", re.S | re.M)
# A row of an op table: | `op(…)` | `example` | meaning |
OP_ROW = re.compile(r"^\| `(?P<op>[a-z_0-9]+)\(.*?` \| `(?P<example>[^`]+)` \|", re.M)


def page() -> str:
    return LANGUAGE.read_text()


def complete_specs() -> list[str]:
    return COMPLETE_SPEC.findall(page())


def section(title: str) -> str:
    text = page()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def problems(text: str, file: str = "doc.loss") -> list[str]:
    """Errors and warnings of a spec (I500 notes are fine)."""
    return [
        f"{d.code} {d.span.line}:{d.span.col}: {d.message}"
        for d in check_text(text, file).diagnostics
        if d.severity != "info"
    ]


def documented_name(op: str) -> str:
    """How a user calls an op: `minimum` is `min(a, b)`."""
    return {full: short for short, full in ELEMENTWISE_FORM.items()}.get(op, op)


@pytest.mark.parametrize("op", sorted((set(OPS) - OPERATOR_ONLY - VALUE_OPS) | set(CALLABLE_NAMES)))
def test_every_op_of_the_op_table_is_documented_with_its_call(op: str) -> None:
    rows = {m["op"] for m in OP_ROW.finditer(page())}
    assert documented_name(op) in rows, f"docs/language.md has no op table row for {op}()"


@pytest.mark.parametrize("keyword", ["loss", *DECLARATION_KEYWORDS])
def test_every_declaration_keyword_has_a_row(keyword: str) -> None:
    assert re.search(rf"^\| `{keyword}\b", section("Declarations"), re.M), keyword


@pytest.mark.parametrize(
    "operator", sorted(set(BINARY_OPERATORS) | set(UNARY_OPERATORS) | {"^", "**"})
)
def test_every_operator_is_in_the_expressions_section(operator: str) -> None:
    assert re.search(rf"`[^`]*(?<![*<>=!]){re.escape(operator)}", section("Expressions"))


def test_the_page_has_complete_specs() -> None:
    assert len(complete_specs()) >= 2  # the complete example and the examples' declarations


@pytest.mark.parametrize("index", range(len(COMPLETE_SPEC.findall(LANGUAGE.read_text()))))
def test_every_complete_spec_on_the_page_checks_clean(index: int) -> None:
    spec = complete_specs()[index]
    assert problems(spec) == [], spec


def examples_spec() -> str:
    return next(s for s in complete_specs() if s.startswith("loss examples"))


OP_EXAMPLES = [(m["op"], m["example"]) for m in OP_ROW.finditer(LANGUAGE.read_text())]


@pytest.mark.parametrize(("op", "example"), OP_EXAMPLES, ids=[op for op, _ in OP_EXAMPLES])
def test_every_op_example_checks_clean_and_calls_its_op(op: str, example: str) -> None:
    assert re.search(rf"\b{op}\(", example), f"the example of {op}() does not call it"
    spec = examples_spec() + f"metric example = {example}\n"
    assert problems(spec) == [], example


def test_a_broken_example_would_be_caught() -> None:
    """The check above can fail: an example with a typo or a hazard is not clean."""
    assert problems(examples_spec() + "metric example = lgo(q)\n")
    assert problems(examples_spec() + "metric example = log(p)\n")


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_docs_do_not_point_outside_the_repository(path: Path) -> None:
    text = path.read_text()
    assert "../shared" not in text and "LANGUAGE.md" not in text, path.name


def anchor(heading: str) -> str:
    """A heading's anchor as GitHub makes it."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_links_between_pages_resolve(path: Path) -> None:
    for target, fragment in re.findall(r"\]\(([^)#:\s]*)(?:#([^)\s]+))?\)", path.read_text()):
        linked = (path.parent / target) if target else path
        assert linked.is_file(), f"{path.name} links to {target}, which does not exist"
        if fragment:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), re.M)
            assert fragment in {anchor(h) for h in headings}, f"{path.name}: #{fragment}"


@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_the_complete_example_runs_as_its_python_snippet_shows(reduction: str) -> None:
    import torch

    import lossdsl

    spec = next(s for s in complete_specs() if s.startswith("loss clipped_policy"))
    loss_fn = lossdsl.load_text(spec, params={"clip": 0.1, "reduction": reduction})
    B, T, V = 2, 5, 7
    logits = torch.randn(B, T, V, requires_grad=True)
    out = loss_fn(
        logits=logits,
        values=torch.randn(B, T, requires_grad=True),
        actions=torch.randint(0, V, (B, T)),
        old_logp=-torch.rand(B, T),
        advantages=torch.randn(B, T),
        returns=torch.randn(B, T),
        step=1200,
    )
    out.loss.backward()
    assert torch.isfinite(out.loss) and logits.grad is not None
    assert list(out.terms) == ["policy", "value", "entropy"]
    assert list(out.metrics) == ["clip_frac", "approx_kl"]
