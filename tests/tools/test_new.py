"""`lossdsl new`: a spec to start from, under its own name, that checks as its source does."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import lossdsl
from lossdsl.cli import app
from lossdsl.tools import ToolError
from lossdsl.tools.new import new_spec


def test_new_from_a_standard_spec_is_that_spec_under_a_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["new", "my_ppo", "--from", "ppo"])
    assert result.exit_code == 0, result.output
    assert result.output == "wrote my_ppo.loss (from ppo)\n"
    copy = lossdsl.build_ir(tmp_path / "my_ppo.loss")
    original = lossdsl.build_ir("ppo")
    assert copy.name == "my_ppo"
    assert [(n.op, n.args, n.name) for n in copy.nodes] == [
        (n.op, n.args, n.name) for n in original.nodes
    ]
    again = CliRunner().invoke(app, ["new", "my_ppo", "--from", "ppo"])
    assert again.exit_code == 2 and "exists" in again.output


def test_the_template_checks_clean(tmp_path: Path) -> None:
    path = tmp_path / "start.loss"
    path.write_text(new_spec("start"))
    assert lossdsl.check(path) == []
    assert lossdsl.build_ir(path).name == "start"


def test_bad_names_and_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="not '2fast'"):
        new_spec("2fast")
    with pytest.raises(ToolError, match="no such spec"):
        new_spec("mine", "no_such_loss")
    (tmp_path / "partner.loss").write_text("loss partner\ndef double(x) = 2 * x\n")
    (tmp_path / "user.loss").write_text('loss user\nuse "partner.loss"\n')
    with pytest.raises(ToolError, match="relative path"):
        new_spec("mine", "user.loss", base=tmp_path)
