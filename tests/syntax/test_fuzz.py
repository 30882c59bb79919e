"""Malformed text never crashes the front end: random and mutated specs give diagnostics.

The only outcomes allowed are a `Checked` from `check_text` (any diagnostics), and from
`lossdsl.parse` / `lossdsl.check` either a result or a `LossSpecError`. Every diagnostic
points inside the text it was given.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lossdsl
from lossdsl.diagnostics import LossSpecError
from lossdsl.passes.pipeline import Checked, check_text
from lossdsl.resources import stdlib_dir

SPECS = sorted(stdlib_dir().rglob("*.loss"))
TEXTS = {path: path.read_text() for path in SPECS}
TOKEN = re.compile(r'"""(?:.|\n)*?"""|"[^"\n]*"|#[^\n]*|\.\.\.|[<>=!]=|\w+|\s+|.', re.S)

PUNCTUATION = list("()[]{},:=+-*/^<>.\"#$@!;'\\") + ["...", "<=", "==", "!=", '"""', "\n"]
WORDS = [
    "loss", "use", "input", "param", "def", "let", "term", "minimize", "metric", "grad",
    "in", "and", "or", "not", "true", "false", "inf", "step", "float", "int", "bool",
    "dim", "where", "mean", "sum", "gather", "select", "x", "B", "T", "V", "0", "1e-8",
    ".5", "10_000", "-inf", "global_sum",
]  # fmt: skip
FUZZ = settings(
    max_examples=int(os.environ.get("LOSSDSL_FUZZ_EXAMPLES", "60")),  # raise it to hunt
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def check_never_crashes(text: str, base: Path | None = None) -> Checked:
    checked = check_text(text, "fuzz.loss", base)
    assert isinstance(checked, Checked)
    lines = text.split("\n")
    for d in checked.diagnostics:
        if d.span.file != "fuzz.loss":
            continue  # a diagnostic inside a spec this one uses
        assert 1 <= d.span.line <= len(lines), (d, text)
        assert 1 <= d.span.col <= len(lines[d.span.line - 1]) + 1, (d, text)
        assert d.code[0] in "EWI" and d.message
    if not checked.ok:
        assert any(d.severity == "error" for d in checked.diagnostics) or checked.ir is None
    try:
        lossdsl.parse(text, "fuzz.loss")
    except LossSpecError as error:
        assert error.diagnostics
    return checked


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


def mutate(text: str, integer: Callable[[int, int], int], pick: Callable[[list], Any]) -> str:
    """Up to four token-level edits of `text`, chosen by `integer(lo, hi)` and `pick(options)`
    (hypothesis's draws, or a seeded `random.Random`)."""
    pieces = tokens(text)
    for _ in range(integer(1, 4)):
        if not pieces:
            break
        i = integer(0, len(pieces) - 1)
        how = pick(["delete", "duplicate", "swap", "insert", "char", "cut"])
        if how == "delete":
            del pieces[i]
        elif how == "duplicate":
            pieces.insert(i, pieces[i])
        elif how == "swap" and i + 1 < len(pieces):
            pieces[i], pieces[i + 1] = pieces[i + 1], pieces[i]
        elif how == "insert":
            pieces.insert(i, pick(PUNCTUATION + [f" {w} " for w in WORDS]))
        elif how == "char" and pieces[i]:
            piece = pieces[i]
            j = integer(0, len(piece) - 1)
            pieces[i] = piece[:j] + pick(PUNCTUATION) + piece[j + 1 :]
        elif how == "cut":
            pieces = pieces[:i]
    return "".join(pieces)


@st.composite
def mutated_spec(draw: st.DrawFn) -> tuple[Path, str]:
    path = draw(st.sampled_from(SPECS))
    text = mutate(
        TEXTS[path],
        lambda lo, hi: draw(st.integers(lo, hi)),
        lambda options: draw(st.sampled_from(options)),
    )
    return path, text


SEEDED_MUTATIONS = 300
SLOWEST_CHECK_S = 10.0


def test_300_seeded_mutations_of_the_standard_library_give_diagnostics_quickly() -> None:
    """The same 300 mutants every run (hypothesis's examples vary): each ends in diagnostics,
    never an exception, and none takes 10 s to check."""
    rng = random.Random(20261129)
    slowest = (0.0, "")
    for n in range(SEEDED_MUTATIONS):
        path = SPECS[n % len(SPECS)]
        text = mutate(TEXTS[path], rng.randint, rng.choice)
        start = time.perf_counter()
        check_never_crashes(text, path.parent)
        slowest = max(slowest, (time.perf_counter() - start, text))
    assert slowest[0] < SLOWEST_CHECK_S, slowest


@FUZZ
@given(mutated_spec())
def test_mutated_standard_specs_give_diagnostics_not_exceptions(case: tuple[Path, str]) -> None:
    path, text = case
    check_never_crashes(text, path.parent)


@FUZZ
@given(
    st.lists(st.sampled_from(PUNCTUATION + WORDS + [" ", " ", "\n"]), min_size=0, max_size=40).map(
        " ".join
    )
)
def test_random_token_soup_gives_diagnostics_not_exceptions(text: str) -> None:
    check_never_crashes(text)
    check_never_crashes("loss soup\n" + text)


@FUZZ
@given(st.text(max_size=80))
def test_random_characters_give_diagnostics_not_exceptions(text: str) -> None:
    check_never_crashes(text)
    check_never_crashes("loss chars\ninput x : float[N] grad\nterm t = mean(x)\n" + text)


def test_every_standard_spec_is_still_clean_unmutated() -> None:
    for path, text in TEXTS.items():
        checked = check_never_crashes(text, path.parent)
        assert checked.ok, [str(d) + " " + d.message for d in checked.diagnostics]


def test_check_of_a_malformed_file_raises_nothing(tmp_path: Path) -> None:
    for i, text in enumerate(["", "loss", "loss a\nlet", "\x00\x01", 'loss a\nuse "x.loss"']):
        spec = tmp_path / f"bad{i}.loss"
        spec.write_text(text)
        diagnostics = lossdsl.check(str(spec))
        assert any(d.severity == "error" for d in diagnostics)
    assert [d.code for d in lossdsl.check(str(tmp_path / "missing.loss"))] == ["E105"]
