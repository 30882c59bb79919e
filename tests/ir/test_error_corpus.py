"""The corpus of broken specs: each fixture says, in its first lines, what it must produce.

A fixture in `tests/fixtures/errors/` starts with one line per expected diagnostic,

    # expect: E200 6:16
    # expect: E105 ../use_cycle/e105_partner.loss:2:1

(the code, and the 1-based line:col where the diagnostic starts; a diagnostic in another
file names that file relative to the fixture). Checking the fixture must give exactly
those diagnostics: no fewer, no others, no duplicates. A line `# check: sliced` checks it
as `lossdsl check --sliced` does (whether it can run in slices, E205).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from lossdsl.passes.pipeline import check_text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CORPUS = sorted((FIXTURES / "errors").glob("*.loss"))
# ../shared sits beside the repository, in development and in CI.
LANGUAGE_MD = Path(__file__).resolve().parents[3] / "shared" / "LANGUAGE.md"

EXPECT = re.compile(r"#\s*expect:\s*(?P<code>[EWI]\d{3})\s+(?:(?P<file>\S+):)?(?P<pos>\d+:\d+)\s*$")
# The front end's codes, as LANGUAGE.md's table lists them (used when it is not at hand).
FRONT_END_CODES = [f"E10{i}" for i in range(7)] + [f"E20{i}" for i in range(5)]

Place = tuple[str, str, int, int]  # code, resolved file, line, col


def expected_diagnostics(path: Path) -> Counter[Place]:
    """The `# expect:` lines at the top of a fixture (before its first non-comment line)."""
    found: Counter[Place] = Counter()
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = EXPECT.match(line)
        if match:
            file = (path.parent / match["file"]).resolve() if match["file"] else path
            row, col = (int(n) for n in match["pos"].split(":"))
            found[(match["code"], str(file), row, col)] += 1
    return found


def produced_diagnostics(path: Path) -> tuple[Counter[Place], list[str]]:
    text = path.read_text()
    sliced = re.search(r"^#\s*check:\s*sliced\s*$", text, re.M) is not None
    checked = check_text(text, str(path), path.parent, sliced=sliced)
    places: Counter[Place] = Counter()
    shown = []
    for d in checked.diagnostics:
        file = Path(d.span.file)
        file = file if file.is_absolute() else (Path.cwd() / file)
        places[(d.code, str(file.resolve()), d.span.line, d.span.col)] += 1
        shown.append(f"{d.code} {d.span}: {d.message}")
    return places, shown


def assert_exactly_expected(path: Path) -> None:
    expected = expected_diagnostics(path)
    assert expected, f"{path.name} has no `# expect:` line"
    produced, shown = produced_diagnostics(path)
    assert produced == expected, (
        f"{path.name}: expected {sorted(expected.elements())}, got:\n  " + "\n  ".join(shown)
    )


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_broken_spec_gives_exactly_its_diagnostics(path: Path) -> None:
    assert_exactly_expected(path)


def front_end_codes() -> list[str]:
    """E100..E204 from LANGUAGE.md's diagnostics table."""
    if not LANGUAGE_MD.is_file():
        return FRONT_END_CODES
    codes = re.findall(r"^\|\s*(E[12]\d\d)\s*\|", LANGUAGE_MD.read_text(), flags=re.M)
    assert codes, "LANGUAGE.md's diagnostics table has no E1xx/E2xx rows"
    return codes


def test_every_front_end_code_has_a_fixture() -> None:
    covered = {code for path in CORPUS for (code, *_) in expected_diagnostics(path)}
    missing = [code for code in front_end_codes() if code not in covered]
    assert not missing, f"no fixture in tests/fixtures/errors/ expects {missing}"


def test_e100_has_several_fixtures() -> None:
    e100 = [p for p in CORPUS if any(c == "E100" for (c, *_) in expected_diagnostics(p))]
    assert len(e100) >= 5


def test_every_fixture_is_broken_and_expects_only_errors() -> None:
    for path in CORPUS:
        codes = {code for (code, *_) in expected_diagnostics(path)}
        assert codes and all(code.startswith("E") for code in codes), path.name
