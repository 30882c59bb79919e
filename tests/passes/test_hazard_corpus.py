"""The hazard corpus (issue 3, "Checked by"): for every W-code, specs that must raise it at
the right line and column, and near misses that must not.

A fixture in `tests/fixtures/hazards/` starts with one line per expected diagnostic,

    # expect: W300 5:18

(the code and the 1-based line:col where it starts), or, for a near miss, the single line

    # expect: nothing

Checking the fixture must give exactly those diagnostics: no fewer, no others (errors,
warnings or I500 notes), no duplicates. Fixtures are named after the code they are about:
`w300_*.loss` raises W300, `w300_ok_*.loss` is a W300 near miss.

Also here: the standard library checks clean of W300–W303 in every static-choice
combination, and the fixes LANGUAGE.md quotes are the ones given.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from lossdsl.ir.loader import resolve_reference
from lossdsl.passes import check_reference, check_text
from tests.support import static_choice_sets

ROOT = Path(__file__).resolve().parents[2]
HAZARDS = ROOT / "tests" / "fixtures" / "hazards"
CORPUS = sorted(HAZARDS.glob("*.loss"))
STDLIB = sorted(ROOT.glob("specs/**/*.loss"))
LANGUAGE_MD = ROOT.parent / "shared" / "LANGUAGE.md"

EXPECT = re.compile(r"#\s*expect:\s*(?P<code>[EWI]\d{3})\s+(?P<line>\d+):(?P<col>\d+)\s*$")
NOTHING = re.compile(r"#\s*expect:\s*nothing\s*$")
# The analysis' warnings, as LANGUAGE.md's table lists them (used when it is not at hand).
ANALYSIS_CODES = ["W300", "W301", "W302", "W303", "W304", "W400", "W401", "W402"]
NAN_HAZARDS = {"W300", "W301", "W302", "W303"}

Place = tuple[str, int, int]  # code, line, col


def header(path: Path) -> list[str]:
    """The comment lines before the first declaration."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def expected(path: Path) -> tuple[Counter[Place], bool]:
    """The expected diagnostics, and whether the fixture says `# expect: nothing`."""
    found: Counter[Place] = Counter()
    nothing = False
    for line in header(path):
        match = EXPECT.match(line)
        if match:
            found[(match["code"], int(match["line"]), int(match["col"]))] += 1
        elif NOTHING.match(line):
            nothing = True
    return found, nothing


def produced(path: Path) -> tuple[Counter[Place], list[str]]:
    checked = check_text(path.read_text(), str(path), path.parent)
    places: Counter[Place] = Counter()
    shown = []
    for d in checked.diagnostics:
        assert Path(d.span.file).resolve() == path.resolve(), f"{d.code} in {d.span.file}"
        places[(d.code, d.span.line, d.span.col)] += 1
        shown.append(f"{d.code} {d.span.line}:{d.span.col}: {d.message}")
    return places, shown


def code_of(path: Path) -> str:
    """`w300_ok_log_clamped` -> W300."""
    return path.stem.split("_", 1)[0].upper()


def is_near_miss(path: Path) -> bool:
    return path.stem.split("_")[1] == "ok"


def analysis_codes() -> list[str]:
    """W3xx/W4xx from LANGUAGE.md's diagnostics table."""
    if not LANGUAGE_MD.is_file():
        return ANALYSIS_CODES
    codes = re.findall(r"^\|\s*(W[34]\d\d)\s*\|", LANGUAGE_MD.read_text(), flags=re.M)
    assert codes, "LANGUAGE.md's diagnostics table has no W3xx/W4xx rows"
    return codes


# ---- the corpus ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_fixture_gives_exactly_its_diagnostics(path: Path) -> None:
    want, nothing = expected(path)
    got, shown = produced(path)
    assert nothing != bool(want), f"{path.name}: either `# expect: nothing` or expect lines"
    assert got == want, (
        f"{path.name}: expected {sorted(want.elements()) or 'nothing'}, got:\n  "
        + ("\n  ".join(shown) or "nothing")
    )


def test_fixtures_are_named_after_their_code() -> None:
    codes = set(analysis_codes())
    for path in CORPUS:
        code = code_of(path)
        assert code in codes, f"{path.name}: not named after a W-code ({sorted(codes)})"
        want, nothing = expected(path)
        if is_near_miss(path):
            assert nothing, f"{path.name} is a near miss: it must expect nothing"
        else:
            assert code in {c for (c, _, _) in want}, f"{path.name} must expect {code}"


@pytest.mark.parametrize("code", analysis_codes())
def test_every_code_has_a_fixture_and_a_near_miss(code: str) -> None:
    raising = [p for p in CORPUS if code_of(p) == code and not is_near_miss(p)]
    near = [p for p in CORPUS if code_of(p) == code and is_near_miss(p)]
    assert any(code in {c for (c, _, _) in expected(p)[0]} for p in raising), (
        f"no fixture in tests/fixtures/hazards/ raises {code}"
    )
    assert near, f"no near-miss fixture (w{code[1:]}_ok_*.loss) for {code}"


def test_corpus_has_the_near_misses_of_the_issue() -> None:
    """The near misses issue 3 and LANGUAGE.md name, each in some `expect: nothing` fixture."""
    texts = {p.stem: p.read_text() for p in CORPUS if expected(p)[1]}
    wanted = [
        "log(clamp(p, min=1e-8))",
        "in (0, 1]",  # log(p) with p in (0, 1]
        "exp(clamp(x, max=20))",
        "max(count(m), 1)",
        "in [1, inf)",  # sqrt(x) with x in [1, inf)
        "log(where(x > 0, x, 1))",
        "where(x > 0, x, 0)",
        "exp(clamp(lp - old, max=20))",
    ]
    for snippet in wanted:
        assert any(snippet in text for text in texts.values()), snippet


# ---- what the diagnostics say -----------------------------------------------------------


def diagnostics_of(stem: str) -> list:
    path = HAZARDS / f"{stem}.loss"
    return check_text(path.read_text(), str(path), path.parent).diagnostics


def test_log_of_zero_has_the_documented_fix() -> None:
    (w300,) = diagnostics_of("w300_log_of_zero")
    assert w300.fix == "log(clamp(p, min=1e-8))"
    assert "log" in w300.message and "[0, 1]" in w300.message
    assert (w300.span.end_line, w300.span.end_col) == (w300.span.line, w300.span.col + 6)


def test_exp_overflow_has_a_clamping_fix() -> None:
    (w301,) = diagnostics_of("w301_exp_overflow")
    assert w301.fix == "exp(clamp(x, max=20))"
    assert "88" in w301.message


def test_division_fix_quotes_the_denominator() -> None:
    (w300,) = diagnostics_of("w300_division_by_count")
    assert w300.fix is not None and "count(m)" in w300.fix


def test_problem_in_a_def_names_the_call_site() -> None:
    (w300,) = diagnostics_of("w300_in_def")
    assert any("neg_log" in note for note in w300.notes), w300.notes


def test_where_leak_suggests_the_double_where() -> None:
    (w303,) = diagnostics_of("w303_where_log")
    assert w303.fix is not None and "where(" in w303.fix


def test_hazards_and_term_warnings_carry_a_fix() -> None:
    for path in CORPUS:
        for d in check_text(path.read_text(), str(path), path.parent).diagnostics:
            if d.code in {"W300", "W301", "W302", "W303", "W400", "W401", "W402"}:
                assert d.fix, f"{path.name}: {d.code} has no fix"


def test_w304_names_the_low_precision_input() -> None:
    found = diagnostics_of("w304_bf16_exp")
    assert found and all(d.code == "W304" and "`x`" in d.message for d in found)


def test_term_warnings_point_at_the_term() -> None:
    for stem, code, name in [
        ("w400_no_grad_input", "W400", "prior"),
        ("w401_comparison_only", "W401", "positive"),
        ("w402_reinforce", "W402", "policy"),
    ]:
        (d,) = diagnostics_of(stem)
        assert d.code == code and f"`{name}`" in d.message


# ---- the standard library ----------------------------------------------------------------


def stdlib_choice_sets() -> list[tuple[str, dict[str, str]]]:
    """Every stdlib spec with its default choices, and every other static-choice combination."""
    cases: list[tuple[str, dict[str, str]]] = []
    for path in STDLIB:
        checked = check_reference(path.stem)
        assert checked.ir is not None, path.stem
        for combo in static_choice_sets(checked.ir.choices):
            cases.append((path.stem, dict(combo)))
    return cases


def test_stdlib_names_resolve_to_their_files() -> None:
    for path in STDLIB:
        found = resolve_reference(path.stem)
        assert found is not None and Path(found).resolve() == path.resolve(), path.stem


STDLIB_CHOICES = stdlib_choice_sets()


@pytest.mark.parametrize(
    ("name", "choices"),
    STDLIB_CHOICES,
    ids=[f"{n}-{'-'.join(c.values()) or 'default'}" for n, c in STDLIB_CHOICES],
)
def test_stdlib_is_clean_of_nan_hazards(name: str, choices: dict[str, str]) -> None:
    checked = check_reference(name, choices)
    assert checked.ok, [f"{d.code} {d.span}: {d.message}" for d in checked.diagnostics]
    hazards = [
        f"{d.code} {d.span.file}:{d.span.line}:{d.span.col}: {d.message}"
        for d in checked.diagnostics
        if d.code in NAN_HAZARDS
    ]
    assert not hazards, "\n".join(hazards)
