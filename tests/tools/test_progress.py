"""Progress bars: drawn on a terminal, silent when the output is a pipe or a file."""

from __future__ import annotations

import io

from rich.console import Console
from typer.testing import CliRunner

from lossdsl.cli import app
from lossdsl.tools.progress import progress


def test_progress_is_drawn_on_a_terminal() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=80)
    with progress("analyzing ppo", total=3, console=console) as advance:
        for _ in range(3):
            advance()
    assert "analyzing ppo" in screen.getvalue()
    assert "\x1b[" in screen.getvalue()


def test_progress_is_silent_when_the_output_is_not_a_terminal() -> None:
    log = io.StringIO()
    console = Console(file=log, force_terminal=False)
    with progress("analyzing ppo", total=3, console=console) as advance:
        advance()
        advance(2, description="done")
    assert log.getvalue() == ""


def test_a_command_with_progress_prints_only_its_report_to_a_pipe() -> None:
    result = CliRunner().invoke(app, ["analyze", "huber", "--dims", "...=4"])
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.output and "analyzing" not in result.output
    assert result.output.startswith("huber at step 0, seed 0, synthetic inputs: input[4]")
