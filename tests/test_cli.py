"""The `lossdsl` command: check, compile, explain, list."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from lossdsl.cli import app

runner = CliRunner()

CLEAN = "loss clean\ninput x : float[N] grad\nterm t = mean(square(x))\n"
BROKEN = "loss broken\ninput x : float[N] grad\nterm t = mena(x)\nterm u = x\n"


def test_check_clean_spec_exits_zero(write_spec):
    result = runner.invoke(app, ["check", str(write_spec(CLEAN))])
    assert result.exit_code == 0
    assert "ok" in result.output


def test_check_reports_every_error_with_carets_and_exits_two(write_spec):
    path = write_spec(BROKEN)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 2
    assert "3:10: E101 unknown op or def `mena`" in result.output
    assert "fix: did you mean `mean`?" in result.output
    assert "4:1: E202 term `u` is float[N], not a scalar" in result.output
    assert "         ^^^^" in result.output


def test_check_json_is_one_document_with_one_object_per_file(write_spec):
    clean, broken = write_spec(CLEAN, "a.loss"), write_spec(BROKEN, "b.loss")
    result = runner.invoke(app, ["check", str(clean), str(broken), "--format", "json"])
    assert result.exit_code == 2
    reports = json.loads(result.output)
    assert [len(r["diagnostics"]) for r in reports] == [0, 2]
    first = reports[1]["diagnostics"][0]
    assert {k: first[k] for k in ("code", "severity", "line", "col", "end_line", "end_col")} == {
        "code": "E101",
        "severity": "error",
        "line": 3,
        "col": 10,
        "end_line": 3,
        "end_col": 14,
    }


def test_check_accepts_standard_library_names():
    result = runner.invoke(app, ["check", "huber", "mse"])
    assert result.exit_code == 0, result.output


def test_check_of_a_missing_spec_is_an_error_not_a_traceback():
    result = runner.invoke(app, ["check", "no_such_loss"])
    assert result.exit_code == 2
    assert "E105" in result.output and "Traceback" not in result.output


def test_compile_writes_a_module_and_explain_shows_ir_and_code(write_spec, tmp_path: Path):
    out = tmp_path / "clean_loss.py"
    result = runner.invoke(app, ["compile", str(write_spec(CLEAN)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "class Clean(LossRuntime, torch.nn.Module)" in out.read_text()
    explained = runner.invoke(app, ["explain", str(write_spec(CLEAN))])
    assert "IR:" in explained.output and "def forward(self, x, step):" in explained.output


def test_compile_of_a_broken_spec_exits_two(write_spec, tmp_path: Path):
    result = runner.invoke(app, ["compile", str(write_spec(BROKEN)), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert not (tmp_path / "o").exists()


def test_list_shows_the_standard_library():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"mse", "huber", "cross_entropy"} <= set(names)


def test_check_does_not_import_torch(write_spec):
    program = (
        "import sys\nfrom lossdsl.cli import app\n"
        f"try:\n    app(['check', {str(write_spec(CLEAN))!r}])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip().endswith("False")
