"""docs/tools.md documents every workbench command, and its examples are what they print."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lossdsl.cli import app
from lossdsl.syntax.parser import parse
from lossdsl.tools.fmt import format_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "tools.md"
COMMANDS = ("analyze", "plot", "landscape", "graph", "fmt", "new", "tune", "lsp")
CONSOLE = re.compile(r"^```console\n(.*?)^```", re.S | re.M)
LOSS = re.compile(r"^```loss\n(.*?)^```", re.S | re.M)


def doc() -> str:
    return DOC.read_text()


def test_every_workbench_command_has_a_section() -> None:
    for command in COMMANDS:
        assert f"\n## `lossdsl {command}`" in doc(), command
    registered = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert set(COMMANDS) <= registered


def test_the_specs_on_the_page_parse_and_are_formatted() -> None:
    specs = LOSS.findall(doc())
    assert len(specs) >= 2
    for text in specs:
        parse(text)
        assert format_text(text) == text


def sessions() -> list[list[tuple[str, str]]]:
    """Each console block as (command, expected output) pairs."""
    found = []
    for block in CONSOLE.findall(doc()):
        pairs: list[tuple[str, list[str]]] = []
        for line in block.splitlines():
            if line.startswith("$ "):
                pairs.append((line[2:], []))
            elif pairs:
                pairs[-1][1].append(line)
        found.append([(command, "\n".join(out)) for command, out in pairs])
    return found


@pytest.mark.parametrize("index", range(len(sessions())))
def test_the_console_examples_print_what_the_page_shows(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a folder holding the page's `risky.loss` (the tune, landscape and plot runs are
    left out: they write images or take longer; their own tests cover them)."""
    session = sessions()[index]
    if any(
        c.split()[1] in ("tune", "landscape", "plot") for c, _ in session if c.startswith("lossdsl")
    ):
        assert all(out.startswith(("wrote", "best:")) or not out for _, out in session)
        return
    monkeypatch.chdir(tmp_path)
    (tmp_path / "risky.loss").write_text(LOSS.findall(doc())[0])
    files: dict[str, str] = {}
    for command, expected in session:
        words = shlex.split(command)
        if words[0] == "cat" and words[1] in files:
            assert expected == files[words[1]].rstrip("\n")
            continue
        if words[0] == "cat":  # the first look at a file: the page says what it holds
            (tmp_path / words[1]).write_text(expected + "\n")
            files[words[1]] = expected + "\n"
            continue
        if words[0] == "sed":
            line = int(words[2].rstrip("p"))
            assert (tmp_path / words[3]).read_text().splitlines()[line - 1] == expected
            continue
        result = CliRunner().invoke(app, words[1:])
        assert result.output.rstrip("\n") == expected, command
        for name in files:
            files[name] = (tmp_path / name).read_text()
