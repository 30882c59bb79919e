"""Keep README.md's console blocks true: run the commands they show and write what they print.

    python scripts/readme.py           # rewrite the outputs in README.md from real runs
    python scripts/readme.py --check   # exit 1, with a diff, when README.md is out of date

A ```console block holds commands (`$ lossdsl …`, `$ cat FILE`) each followed by what it
prints. The files the commands read are the README's own text: a code block right after an
`<!-- file: NAME -->` comment is the file NAME, and the output shown under `$ cat NAME` is
the file NAME. All of them are written to a fresh folder, the commands run there one after
the other (`lossdsl` as `python -m lossdsl` of this interpreter, stdout and stderr together,
no colour), and each command's shown output is replaced by what it printed.
tests/test_readme.py fails when the README and a real run disagree.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"

CONSOLE = re.compile(r"^```console\n(.*?)^```\n", re.S | re.M)
FILE_BLOCK = re.compile(
    r"^<!-- file: (?P<name>[\w.-]+) -->\n```[^\n]*\n(?P<text>.*?)^```\n", re.S | re.M
)
PROMPT = "$ "


@dataclass
class Command:
    line: str  # as shown, without the prompt
    output: str  # as shown


def commands_of(block: str) -> list[Command]:
    found: list[Command] = []
    for line in block.splitlines(keepends=True):
        if line.startswith(PROMPT):
            found.append(Command(line[len(PROMPT) :].rstrip("\n"), ""))
        elif found:
            found[-1].output += line
        elif line.strip():
            raise ValueError(f"console block output before any command: {line!r}")
    return found


def files_of(readme: str) -> dict[str, str]:
    """Every file the README shows: after a `<!-- file: NAME -->` comment, or as `$ cat`."""
    files = {m["name"]: m["text"] for m in FILE_BLOCK.finditer(readme)}
    for block in CONSOLE.findall(readme):
        for command in commands_of(block):
            words = shlex.split(command.line)
            if words[0] == "cat" and len(words) == 2:
                files[words[1]] = command.output
    return files


def run(command: Command, folder: Path) -> str:
    """What the command prints (stdout and stderr as they interleave)."""
    words = shlex.split(command.line)
    if words[0] == "cat":
        return command.output  # the file is the README's text: nothing to regenerate
    if words[0] != "lossdsl":
        raise ValueError(f"README console blocks run `lossdsl` and `cat` only: {command.line}")
    env = {
        **os.environ,
        "LOSSDSL_CACHE_DIR": str(folder / ".cache"),
        "NO_COLOR": "1",
        "COLUMNS": "100",
        "TERM": "dumb",
    }
    result = subprocess.run(
        [sys.executable, "-m", "lossdsl", *words[1:]],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    return result.stdout


def render(readme: str) -> str:
    """README text with every console block's outputs replaced by a real run's."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, text in files_of(readme).items():
            (folder / name).write_text(text)

        def rerun(match: re.Match[str]) -> str:
            lines = []
            for command in commands_of(match.group(1)):
                lines.append(PROMPT + command.line + "\n" + run(command, folder))
            return "```console\n" + "".join(lines) + "```\n"

        return CONSOLE.sub(rerun, readme)


def main(argv: list[str]) -> int:
    current = README.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh == current:
            return 0
        diff = difflib.unified_diff(
            current.splitlines(keepends=True),
            fresh.splitlines(keepends=True),
            "README.md",
            "README.md from real runs",
        )
        sys.stdout.writelines(diff)
        print("README.md is out of date: run `python scripts/readme.py`", file=sys.stderr)
        return 1
    if fresh != current:
        README.write_text(fresh)
        print("README.md: console output rewritten from real runs")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
