"""The `lossdsl` command: check, compile, explain, list."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
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


# ---- properties, --explain, --allow, --strict --------------------------------------

WARNS = (
    "loss warns\n"
    "input p : float[N] grad in [0, 1]\n"
    "input x : float[N] grad in [0, 100]\n"
    "term a = -mean(log(p))\n"
    "term b = mean(exp(x))\n"
)


def test_check_prints_a_property_table_per_spec(write_spec):
    result = runner.invoke(app, ["check", str(write_spec(CLEAN))])
    lines = result.output.splitlines()
    header = next(line for line in lines if line.startswith("term "))
    assert [c.strip() for c in header.split("  ") if c.strip()] == [
        "term",
        "differentiable",
        "continuous",
        "bounds",
        "convex",
        "gradient bounded",
    ]
    row = lines[lines.index(header) + 1]
    assert row.split() == ["t", "yes", "yes", "[0,", "inf)", "proven", "not", "proven"]
    # aligned: each column starts where its header does
    assert row.index("[0, inf)") == header.index("bounds")
    assert row.index("proven") == header.index("convex")


def test_check_prints_no_property_table_for_a_broken_spec(write_spec):
    result = runner.invoke(app, ["check", str(write_spec(BROKEN))])
    assert "differentiable" not in result.output


def test_check_json_has_properties_per_file(write_spec):
    clean, broken = write_spec(CLEAN, "a.loss"), write_spec(BROKEN, "b.loss")
    result = runner.invoke(app, ["check", str(clean), str(broken), "--format", "json"])
    reports = json.loads(result.output)
    assert reports[0]["properties"] == {
        "t": {
            "differentiable": "yes",
            "continuous": "yes",
            "bounds": "[0, inf)",
            "convex": "proven",
            "gradient_bounded": "not proven",
        }
    }
    assert reports[1]["properties"] == {}


def test_explain_prints_a_codes_documentation():
    result = runner.invoke(app, ["check", "--explain", "W300"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("W300 (warning): ")
    assert "term t = -mean(log(p))" in result.output  # the bad spec
    assert "bad.loss:3:16: W300 log of a value that can be 0" in result.output  # its message
    assert "term t = -mean(log(clamp(p, min=1e-8)))" in result.output  # the fixed spec
    assert runner.invoke(app, ["check", "--explain", "e200"]).exit_code == 0


def test_explain_of_an_unknown_code_exits_two_listing_the_codes():
    result = runner.invoke(app, ["check", "--explain", "W999"])
    assert result.exit_code == 2
    assert "W999" in result.output and "E100" in result.output and "I500" in result.output


def test_check_without_specs_is_a_usage_error():
    assert runner.invoke(app, ["check"]).exit_code == 2


def test_strict_exits_one_on_warnings_and_allow_silences_them(write_spec):
    path = str(write_spec(WARNS))
    plain = runner.invoke(app, ["check", path])
    assert plain.exit_code == 0
    assert "W300" in plain.output and "W301" in plain.output
    assert runner.invoke(app, ["check", path, "--strict"]).exit_code == 1
    one = runner.invoke(app, ["check", path, "--strict", "--allow", "W301"])
    assert one.exit_code == 1
    assert "W300" in one.output and "W301" not in one.output
    for allow in (["--allow", "W300", "--allow", "W301"], ["--allow", "W300,W301"]):
        both = runner.invoke(app, ["check", path, "--strict", *allow])
        assert both.exit_code == 0, both.output
        assert "W30" not in both.output


def test_allow_applies_to_json_too(write_spec):
    result = runner.invoke(
        app, ["check", str(write_spec(WARNS)), "--format", "json", "--allow", "W300"]
    )
    codes = [d["code"] for d in json.loads(result.output)[0]["diagnostics"]]
    assert codes == ["W301"]


def test_allow_comment_in_the_spec_and_strict(write_spec):
    text = WARNS.replace("log(p))\n", "log(p))  # lossdsl: allow W300\n").replace(
        "exp(x))\n", "exp(x))  # lossdsl: allow W301\n"
    )
    result = runner.invoke(app, ["check", str(write_spec(text)), "--strict"])
    assert result.exit_code == 0, result.output


def test_allow_refuses_errors_and_unknown_codes(write_spec):
    path = str(write_spec(BROKEN))
    refused = runner.invoke(app, ["check", path, "--allow", "E101"])
    assert refused.exit_code == 2 and "cannot be silenced" in refused.output
    assert runner.invoke(app, ["check", path, "--allow", "W999"]).exit_code == 2
    assert runner.invoke(app, ["check", path, "--allow", "nonsense"]).exit_code == 2


def test_errors_still_exit_two_with_allow(write_spec):
    result = runner.invoke(app, ["check", str(write_spec(BROKEN)), "--allow", "W402"])
    assert result.exit_code == 2
    assert "E101" in result.output


def test_compile_into_a_missing_folder_is_an_error_not_a_traceback(tmp_path: Path):
    result = runner.invoke(app, ["compile", "huber", "-o", str(tmp_path / "no" / "x.py")])
    assert result.exit_code == 2
    assert f"no folder {tmp_path / 'no'}" in result.output
    assert not (tmp_path / "no").exists()


# ---- compile: where it may write -----------------------------------------------------


def compile_args(spec: Path, *outputs: str) -> list[str]:
    return ["compile", str(spec), *outputs]


def assert_refused(result, *words: str) -> None:
    """Exit 2 with one line on stderr saying why, and no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.stderr


def test_compile_refuses_to_write_over_its_own_spec(write_spec):
    spec = write_spec(CLEAN)
    assert_refused(runner.invoke(app, compile_args(spec, "-o", str(spec))), "an input")
    assert spec.read_text() == CLEAN


def test_compile_refuses_an_output_that_is_a_file_the_spec_uses(write_spec, tmp_path: Path):
    helper_text = "loss helper\ndef sq(x) = x * x\n"
    helper = write_spec(helper_text, "helper.loss")
    spec = write_spec(
        'loss user\nuse "helper.loss"\ninput x : float[N] grad\nterm t = mean(sq(x))\n'
    )
    (tmp_path / "link.py").symlink_to(helper)
    os.link(helper, tmp_path / "hard.py")
    for output in ("link.py", "hard.py"):
        result = runner.invoke(app, compile_args(spec, "-o", str(tmp_path / output)))
        assert_refused(result, "an input of this build")
    assert helper.read_text() == helper_text


def test_compile_never_writes_through_a_symbolic_link(write_spec, tmp_path: Path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    (tmp_path / "link.py").symlink_to(target)
    result = runner.invoke(app, compile_args(write_spec(CLEAN), "-o", str(tmp_path / "link.py")))
    assert_refused(result, "symbolic link")
    assert target.read_text() == "mine"
    assert (tmp_path / "link.py").is_symlink()


def test_compile_refuses_two_outputs_in_one_file(write_spec, tmp_path: Path):
    spec = write_spec(CLEAN)
    same = str(tmp_path / "same")
    assert_refused(runner.invoke(app, compile_args(spec, "-o", same, "--export", same)), "one file")
    (tmp_path / "sub").mkdir()
    other_spelling = str(tmp_path / "sub" / ".." / "same")
    result = runner.invoke(app, compile_args(spec, "-o", same, "--export", other_spelling))
    assert_refused(result, "one file")
    assert not (tmp_path / "same").exists()


def test_compile_refuses_to_replace_a_file_it_did_not_write(write_spec, tmp_path: Path):
    mine = tmp_path / "train.py"
    mine.write_text("print('my training script')\n")
    result = runner.invoke(app, compile_args(write_spec(CLEAN), "-o", str(mine)))
    assert_refused(result, "not an output of lossdsl compile")
    assert mine.read_text() == "print('my training script')\n"


def test_compile_refuses_a_spec_name_a_folder_and_a_fifo(write_spec, tmp_path: Path):
    spec = write_spec(CLEAN)
    other_spec = write_spec("loss other\ninput x : float[N] grad\nterm t = mean(x)\n", "o.loss")
    os.mkfifo(tmp_path / "fifo.py")
    (tmp_path / "folder.py").mkdir()
    for output, says in ((other_spec, ".loss name"), ("fifo.py", "not a regular file")):
        result = runner.invoke(app, compile_args(spec, "-o", str(tmp_path / output)))
        assert_refused(result, says)
    assert_refused(runner.invoke(app, compile_args(spec, "-o", str(tmp_path / "folder.py"))))
    assert other_spec.read_text().startswith("loss other")


def test_compile_replaces_its_own_earlier_outputs(write_spec, tmp_path: Path):
    spec, out, program = write_spec(CLEAN), tmp_path / "clean.py", tmp_path / "clean.pt2"
    for _ in range(2):
        result = runner.invoke(app, compile_args(spec, "-o", str(out), "--export", str(program)))
        assert result.exit_code == 0, result.output
    assert "class Clean(LossRuntime" in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.pt2", "clean.py", "spec.loss"]


def test_a_failed_write_leaves_the_earlier_output_whole(
    write_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    spec, program = write_spec(CLEAN), tmp_path / "clean.pt2"
    assert runner.invoke(app, compile_args(spec, "--export", str(program))).exit_code == 0
    earlier = program.read_bytes()

    def fail_half_way(ir, path, **options):
        Path(path).write_bytes(b"half a program")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("lossdsl.backend.export.export_program", fail_half_way)
    result = runner.invoke(app, compile_args(spec, "--export", str(program)))
    assert_refused(result, "No space left on device")
    assert program.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.pt2", "spec.loss"]


def test_check_sliced_says_whether_a_spec_runs_in_slices():
    from typer.testing import CliRunner

    from lossdsl.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["check", "--sliced", "ppo"]).exit_code == 0
    result = runner.invoke(app, ["check", "--sliced", "mse"])
    assert result.exit_code == 2
    assert "E205" in result.output and "nothing to slice" in result.output
