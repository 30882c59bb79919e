"""README.md shows real runs: its console blocks are what the commands print today
(`python scripts/readme.py` rewrites them, `--check` fails when they are stale), its Python
tour runs and gives the values its comments show, and it keeps its two commands."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme", ROOT / "scripts" / "readme.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme"] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def test_console_blocks_are_what_the_commands_print() -> None:
    text = README.read_text()
    assert readme_script().render(text) == text, (
        "README.md's console output is stale: run `python scripts/readme.py`"
    )


def test_a_stale_output_line_is_caught_and_rewritten() -> None:
    text = README.read_text()
    stale = text.replace("my_huber.loss: ok\n", "my_huber.loss: fine\n", 1)
    assert stale != text
    assert readme_script().render(stale) == text


def test_the_files_the_commands_read_are_shown_in_the_readme() -> None:
    files = readme_script().files_of(README.read_text())
    assert set(files) >= {"my_huber.loss", "risky.loss"}
    assert files["risky.loss"].startswith("loss risky\n")


def test_a_command_other_than_lossdsl_or_cat_is_refused(tmp_path: Path) -> None:
    script = readme_script()
    with pytest.raises(ValueError, match="lossdsl"):
        script.run(script.Command("rm -rf /", ""), tmp_path)


def python_tour() -> str:
    (block,) = re.findall(r"^```python\n(.*?)^```", README.read_text(), re.S | re.M)
    return block


def test_the_python_tour_runs_and_gives_the_weights_its_comments_show(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = readme_script().files_of(README.read_text())
    (tmp_path / "my_huber.loss").write_text(files["my_huber.loss"])
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_tour(), "README.md", "exec"), namespace)
    out = namespace["out"]
    assert '{"huber": 1.0, "l1": 0.05}' in python_tour()
    assert {k: round(float(v), 6) for k, v in out.weights.items()} == {"huber": 1.0, "l1": 0.05}
    assert list(out.terms) == ["huber", "l1"] and list(out.metrics) == ["max_residual"]


def test_the_readme_keeps_its_two_commands() -> None:
    section = README.read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```bash\n(.*?)^```", section, re.S | re.M)
    assert commands == ["bash scripts/demo.sh\n", "bash scripts/test.sh\n"]


def test_ci_runs_the_readme_test_command_only() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line for line in lines if line.strip() and not line.startswith("#")]
    assert commands == ["exec bash scripts/test.sh"]
