"""docs/diagnostics.md is generated from lossdsl/codes.py and says what the checker says.

Regenerate with `python -m lossdsl.codes > docs/diagnostics.md`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lossdsl.codes import BAD_FILE, CODES, FIXED_FILE, explain, produced, render_markdown
from lossdsl.passes import check_text

DOC = Path(__file__).resolve().parents[1] / "docs" / "diagnostics.md"

EVERY_CODE = [
    *(f"E10{i}" for i in range(7)),
    *(f"E20{i}" for i in range(7)),
    *(f"W30{i}" for i in range(5)),
    *(f"W40{i}" for i in range(3)),
    "I500",
]


def test_every_code_of_language_md_is_documented():
    assert list(CODES) == EVERY_CODE


def test_the_committed_page_is_the_generated_page():
    assert DOC.read_text() == render_markdown(), (
        "docs/diagnostics.md is stale: run `python -m lossdsl.codes > docs/diagnostics.md`"
    )


def test_python_dash_m_prints_the_page():
    result = subprocess.run(
        [sys.executable, "-m", "lossdsl.codes"], capture_output=True, text=True, check=True
    )
    assert result.stdout == render_markdown()


@pytest.mark.parametrize("code", EVERY_CODE)
def test_the_bad_spec_raises_its_code_where_the_doc_says(code: str):
    doc = CODES[code]
    found = produced(doc)
    assert found, f"{code}: its bad spec does not raise it:\n{doc.bad}"
    assert (found[0].span.file, found[0].span.line, found[0].span.col) == (BAD_FILE, *doc.at)
    page = DOC.read_text()
    section = page[page.index(f"### {code}:") :]
    line, col = doc.at
    assert f"{BAD_FILE}:{line}:{col}: {code} {found[0].message}" in section.split("\n### ")[0]


@pytest.mark.parametrize("code", EVERY_CODE)
def test_the_bad_spec_is_minimal_it_raises_no_other_warning_or_error(code: str):
    doc = CODES[code]
    others = [
        d
        for d in check_text(doc.bad, BAD_FILE, sliced=doc.sliced).diagnostics
        if d.code != code and d.severity != "info"
    ]
    assert others == []


@pytest.mark.parametrize("code", EVERY_CODE)
def test_the_fixed_spec_does_not_raise_the_code(code: str):
    doc = CODES[code]
    diagnostics = check_text(doc.fixed, FIXED_FILE, sliced=doc.sliced).diagnostics
    assert [d for d in diagnostics if d.code == code] == []
    assert [d for d in diagnostics if d.severity == "error"] == []


def test_explain_has_the_parts_of_an_entry():
    text = explain("w300")
    assert text is not None
    doc = CODES["W300"]
    assert text.startswith("W300 (warning): ")
    for line in (doc.bad + doc.fixed).splitlines():
        assert f"    {line}" in text
    assert f"{BAD_FILE}:3:16: W300 " in text and "Fix: " in text
    assert explain("W999") is None
