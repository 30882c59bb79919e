"""`lossdsl fmt`: the canonical layout, idempotent, comments kept, the checked IR unchanged."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lossdsl.cli import app
from lossdsl.diagnostics import LossSpecError
from lossdsl.passes import check_text
from lossdsl.resources import stdlib_dir
from lossdsl.syntax.parser import parse_collecting
from lossdsl.tools import fmt
from lossdsl.tools.fmt import FormatError, format_text

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(stdlib_dir().rglob("*.loss"))
FIXTURES = sorted((ROOT / "tests" / "fixtures").rglob("*.loss"))


def formatted(text: str) -> str:
    return format_text(textwrap.dedent(text).lstrip())


PLACE = re.compile(r"\S+\.loss:\d+:\d+")  # `file:line:col` inside a message or a `via`


def _without_positions(value: Any) -> Any:
    """A model dump without spans, rendered texts and places: what a layout may change."""
    if isinstance(value, str):
        return PLACE.sub("<place>", value)
    if isinstance(value, dict):
        return {
            key: _without_positions(item)
            for key, item in value.items()
            if "span" not in key and key not in ("sources", "warnings", "file")
        }
    if isinstance(value, list | tuple):
        return [_without_positions(item) for item in value]
    return value


def checked_meaning(text: str, path: Path) -> tuple[Any, list[tuple[str, str]]]:
    """The checked IR (node table and declarations, positions left out) and the diagnostics
    (code and message) of a spec's text read from `path`."""
    checked = check_text(text, str(path), path.parent)
    ir = _without_positions(checked.ir.model_dump()) if checked.ir is not None else None
    return ir, [(d.code, _without_positions(d.message)) for d in checked.diagnostics]


@pytest.mark.parametrize("path", SPECS + FIXTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_fmt_is_idempotent_and_keeps_the_checked_ir(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    if parse_collecting(text, str(path))[0] is None:  # the E100 fixtures: refused, unchanged
        with pytest.raises(LossSpecError) as refused:
            format_text(text, str(path))
        assert {d.code for d in refused.value.diagnostics} == {"E100"}
        return
    once = format_text(text, str(path))
    assert format_text(once, str(path)) == once
    ir_before, diagnostics_before = checked_meaning(text, path)
    ir_after, diagnostics_after = checked_meaning(once, path)
    assert ir_after == ir_before
    assert diagnostics_after == diagnostics_before
    comments = [line.strip() for line in text.splitlines() if line.strip().startswith("#")]
    assert all(comment in once for comment in comments)


def test_the_corpus_holds_the_standard_library_and_the_fixtures() -> None:
    assert len(SPECS) >= 30 and len(FIXTURES) >= 80


def test_declarations_of_one_kind_align_like_the_standard_library() -> None:
    assert formatted(
        """
        loss aligned
        input policy_chosen_logps : float[B] grad in (-inf, 0]
        input ref_chosen_logps : float[B]  in (-inf, 0]
        input mask : bool[B]
        param beta = 0.1 in (0, inf)
        param label_smoothing=0.0 in [0, 0.5)
        let z = policy_chosen_logps-ref_chosen_logps
        let scaled_margin = beta*z
        term dpo = -mean(logsigmoid(scaled_margin),where=mask)
        """
    ) == textwrap.dedent(
        """\
        loss aligned
        input policy_chosen_logps : float[B] grad in (-inf, 0]
        input ref_chosen_logps    : float[B]      in (-inf, 0]
        input mask                : bool[B]
        param beta            = 0.1 in (0, inf)
        param label_smoothing = 0.0 in [0, 0.5)
        let z             = policy_chosen_logps - ref_chosen_logps
        let scaled_margin = beta * z
        term dpo = -mean(logsigmoid(scaled_margin), where=mask)
        """
    )


def test_comments_stay_where_they_were_written() -> None:
    assert formatted(
        """
        # expect: nothing
        loss commented   # the header's comment
        \"\"\"A docstring # with a hash that is no comment.\"\"\"

        # inputs
        input x : float[N] grad  # predictions
        input y : float[N]   # targets


        let r = x - y   # residual
        term t = mean(square(r),  # squared
                      where=x > 0)  # only positive predictions
        term u = mean(
            # an own-line comment inside an expression
            abs(r))
        """
    ) == textwrap.dedent(
        """\
        # expect: nothing
        loss commented  # the header's comment
        \"\"\"A docstring # with a hash that is no comment.\"\"\"

        # inputs
        input x : float[N] grad  # predictions
        input y : float[N]       # targets

        let r = x - y               # residual
        term t = mean(square(r),    # squared
                      where=x > 0)  # only positive predictions
        term u = mean(
            # an own-line comment inside an expression
            abs(r))
        """
    )


def test_user_line_breaks_between_arguments_and_before_operators_are_kept() -> None:
    assert formatted(
        """
        loss broken
        input a : float[N] grad
        input b : float[N]
        def pair(p, q) =
          -(p * q
               + q)
        let long = pair(a, b) +
            pair(b,
          a)
        let one_line = pair(a,
          b
        )
        term t = mean(long + one_line)
        """
    ) == textwrap.dedent(
        """\
        loss broken
        input a : float[N] grad
        input b : float[N]
        def pair(p, q) =
            -(p * q
              + q)
        let long = pair(a, b)
                   + pair(b,
                          a)
        let one_line = pair(a,
                            b)
        term t = mean(long + one_line)
        """
    )


def test_keyword_arguments_on_lines_of_their_own_are_indented_and_aligned() -> None:
    assert formatted(
        """
        loss choice
        input x : float[N] grad
        param mode = "a" in {"a", "long_name"}
        let v = select(mode,
                       a=square(x),
                 long_name = abs(x))
        term t = mean(v)
        """
    ) == textwrap.dedent(
        """\
        loss choice
        input x : float[N] grad
        param mode = "a" in {"a", "long_name"}
        let v = select(mode,
            a         = square(x),
            long_name = abs(x))
        term t = mean(v)
        """
    )


def test_parentheses_follow_precedence_and_keep_those_the_user_wrote() -> None:
    text = formatted(
        """
        loss parens
        input x : float[N] grad
        let a = (x - 1) - (x - 2)
        let b = ((x)) ^ 2 ^ 3
        let c = (-x) ^ 2 + -x ^ 2
        let d = not (x > 0 and x < 1) or (x == 3)
        term t = mean(a * (b + c) / (x * x), where=d)
        """
    )
    assert "let a = (x - 1) - (x - 2)\n" in text
    assert "let b = (x) ^ 2 ^ 3\n" in text
    assert "let c = (-x) ^ 2 + -x ^ 2\n" in text
    assert "let d = not (x > 0 and x < 1) or (x == 3)\n" in text
    assert "term t = mean(a * (b + c) / (x * x), where=d)\n" in text


def test_numbers_dims_and_ranges_are_printed_as_written() -> None:
    text = formatted(
        """
        loss numbers
        input x : float[..., 10_000] grad in [ - 1e-3 , inf )
        param steps = 10_000
        term t = mean(x) * 1.50e2 + linear(0.01, 0.0, steps=steps)
        """
    )
    assert "input x : float[..., 10_000] grad in [-1e-3, inf)\n" in text
    assert "param steps = 10_000\n" in text
    assert "1.50e2" in text


def test_a_long_list_of_choices_wraps_after_its_brace() -> None:
    names = ", ".join(f'"choice_number_{i}"' for i in range(8))
    text = formatted(f'loss c\nparam mode = "choice_number_0" in {{{names}}}\n')
    lines = text.splitlines()[1:]
    assert len(lines) == 3 and all(len(line) <= 100 for line in lines)
    assert all(line.index('"') == lines[0].index("{") + 1 for line in lines[1:])


def test_syntax_errors_are_reported_not_formatted() -> None:
    with pytest.raises(LossSpecError) as error:
        format_text("loss x\nterm t = mean(\n")
    assert error.value.diagnostics[0].code == "E100"


def test_a_printer_that_would_change_the_spec_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the printer ever lost a needed parenthesis, the re-parse check refuses the result."""
    monkeypatch.setattr(fmt, "_precedence", lambda e: fmt.ATOM)
    monkeypatch.setattr(fmt._Source, "grouped", lambda self, span: False)
    with pytest.raises(FormatError, match="change the spec's meaning"):
        format_text("loss x\ninput a : float[N] grad\nterm t = mean((a + 1) * a)\n")


# ---- the command -----------------------------------------------------------------------


def test_fmt_rewrites_files_and_check_lists_what_would_change(tmp_path: Path) -> None:
    messy = tmp_path / "specs" / "messy.loss"
    messy.parent.mkdir()
    messy.write_text("loss messy\ninput x:float[N] grad\nterm t=mean(x)\n")
    tidy = tmp_path / "specs" / "tidy.loss"
    tidy.write_text("loss tidy\ninput x : float[N] grad\nterm t = mean(x)\n")
    runner = CliRunner()

    checked = runner.invoke(app, ["fmt", "--check", str(tmp_path / "specs")])
    assert checked.exit_code == 1
    assert checked.output == f"would reformat {messy}\n"
    assert messy.read_text() == "loss messy\ninput x:float[N] grad\nterm t=mean(x)\n"

    written = runner.invoke(app, ["fmt", str(messy), str(tidy)])
    assert written.exit_code == 0, written.output
    assert written.output == f"reformatted {messy}\n"
    assert messy.read_text() == "loss messy\ninput x : float[N] grad\nterm t = mean(x)\n"
    assert runner.invoke(app, ["fmt", "--check", str(tmp_path / "specs")]).exit_code == 0


def test_fmt_leaves_a_file_with_syntax_errors_alone(tmp_path: Path) -> None:
    broken = tmp_path / "broken.loss"
    broken.write_text("loss broken\nterm t = mean(\n")
    result = CliRunner().invoke(app, ["fmt", str(broken)])
    assert result.exit_code == 2
    assert "E100" in result.output
    assert broken.read_text() == "loss broken\nterm t = mean(\n"


def test_fmt_of_standard_input_prints_the_layout() -> None:
    result = CliRunner().invoke(app, ["fmt", "-"], input="loss s\nterm t=mean( 1 )\n")
    assert result.exit_code == 0
    assert result.output == "loss s\nterm t = mean(1)\n"


# ---- layouts the fuzz test found wanting (tests/tools/test_fmt_fuzz.py) ---------------------


def test_two_declarations_on_one_line_align_as_on_two() -> None:
    once = formatted(
        """
        loss joined
        input logits : float[B, C] grad input labels : int[B] in [0, C)
        term t = mean(logits)
        """
    )
    assert "input logits : float[B, C] grad\ninput labels : int[B]           in [0, C)\n" in once
    assert format_text(once) == once


def test_comments_that_would_share_a_line_keep_their_order() -> None:
    once = formatted(
        """
        loss crowded
        input x : float[N] grad
        param w =  # first
          0.5 in [0, 1]  # second
        param mode =  # third
          "a" in  # fourth
          {"a", "b"}
        term t = mean(x) +  # fifth
          0  # sixth
        """
    )
    found = [line.split("#")[1].strip() for line in once.splitlines() if "#" in line]
    assert found == ["first", "second", "third", "fourth", "fifth", "sixth"]
    assert format_text(once) == once


def test_trailing_white_space_in_a_comment_is_dropped() -> None:
    assert (
        formatted("loss s  # spaces after   \nterm t = 1\n")
        == "loss s  # spaces after\nterm t = 1\n"
    )
