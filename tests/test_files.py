"""Hostile files: what `lossdsl check`, `lossdsl.load` and `use` do with a path that is not a
spec. Every case ends with a diagnostic (never a traceback), within 10 s (never blocking on a
fifo nor reading an endless device), writes nothing beside the files, and never quotes the
content of a file that is not a spec."""

from __future__ import annotations

import codecs
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import lossdsl
from lossdsl.spec_files import MAX_SPEC_BYTES

SPEC = "loss plain\ninput x : float[N] grad\nterm t = mean(square(x))\n"
SECRET = "root:x:0:0:SECRET-CONTENT:/root:/bin/bash\n"
HOSTILE_SECONDS = 10


def make_folder(path: Path) -> None:
    path.mkdir()


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_link_to_dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def make_huge(path: Path) -> None:
    with open(path, "wb") as file:  # sparse: costs no disk
        file.write(SPEC.encode())
        file.truncate(MAX_SPEC_BYTES + 1)


def make_link_loop(path: Path) -> None:
    path.symlink_to(path.name)


def make_broken_link(path: Path) -> None:
    path.symlink_to("nowhere.loss")


def make_link_to_a_secret(path: Path) -> None:
    secret = path.parent / "secret.txt"
    secret.write_text(SECRET)
    path.symlink_to(secret)


NOT_A_SPEC: dict[str, tuple[Callable[[Path], None], str]] = {
    # what is at the path, and a word the diagnostic must contain
    "folder": (make_folder, "folder"),
    "fifo": (make_fifo, "fifo"),
    "link to /dev/zero": (make_link_to_dev_zero, "not a .loss file"),
    "file over the size cap": (make_huge, "at most"),
    "link to itself": (make_link_loop, "hostile.loss"),
    "broken link": (make_broken_link, "broken symbolic link"),
    "link to a file that is not a spec": (make_link_to_a_secret, "not a .loss file"),
}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every name under `folder` with its size and modification time (links not followed)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            info = path.lstat()
            found[str(path.relative_to(folder))] = (info.st_size, info.st_mtime_ns)
    return found


def run_cli(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOSSDSL_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "lossdsl", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=HOSTILE_SECONDS,
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("kind", list(NOT_A_SPEC))
def test_check_of_a_path_that_is_not_a_spec_is_e105(kind: str, work: Path, tmp_path: Path):
    make, says = NOT_A_SPEC[kind]
    make(work / "hostile.loss")
    before = snapshot(work)
    result = run_cli("check", "hostile.loss", cwd=work, cache=tmp_path / "cache")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "E105" in result.stdout and says in result.stdout
    assert "SECRET" not in result.stdout + result.stderr
    assert snapshot(work) == before


@pytest.mark.parametrize("kind", list(NOT_A_SPEC))
def test_use_of_a_path_that_is_not_a_spec_is_e105_at_the_use(kind: str, work: Path, tmp_path: Path):
    make, says = NOT_A_SPEC[kind]
    make(work / "hostile.loss")
    (work / "user.loss").write_text('loss user\nuse "hostile.loss"\n' + SPEC.split("\n", 1)[1])
    before = snapshot(work)
    result = run_cli("check", "user.loss", cwd=work, cache=tmp_path / "cache")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "user.loss:2:1: E105" in result.stdout and says in result.stdout
    assert "SECRET" not in result.stdout + result.stderr
    assert snapshot(work) == before


@pytest.mark.parametrize("kind", ["folder", "link to /dev/zero", "file over the size cap"])
def test_load_of_a_path_that_is_not_a_spec_raises_loss_spec_error(
    kind: str, work: Path, monkeypatch: pytest.MonkeyPatch
):
    make, says = NOT_A_SPEC[kind]
    make(work / "hostile.loss")
    monkeypatch.chdir(work)
    with pytest.raises(lossdsl.LossSpecError, match="E105") as raised:
        lossdsl.load("hostile.loss")
    assert says in str(raised.value)


def test_use_of_a_file_that_is_not_a_spec_never_quotes_it(write_spec, tmp_path: Path):
    (tmp_path / "passwd").write_text(SECRET)
    spec = write_spec(f'loss user\nuse "{tmp_path / "passwd"}"\ninput x : float[N] grad\n')
    [diagnostic] = lossdsl.check(str(spec))
    assert diagnostic.code == "E105"
    assert (diagnostic.span.line, diagnostic.span.col) == (2, 1)
    assert "not a .loss file" in diagnostic.message
    assert "SECRET" not in diagnostic.message + str(diagnostic.fix)


def test_use_of_dev_zero_is_refused_without_reading_it(write_spec):
    spec = write_spec('loss user\nuse "/dev/zero"\ninput x : float[N] grad\n')
    [diagnostic] = lossdsl.check(str(spec))
    assert diagnostic.code == "E105" and "not a .loss file" in diagnostic.message


# ------------------------------------------------------------------------- encodings


def test_a_utf8_byte_order_mark_is_accepted(write_spec, tmp_path: Path):
    spec = tmp_path / "bom.loss"
    spec.write_bytes(codecs.BOM_UTF8 + SPEC.encode())
    assert [d for d in lossdsl.check(str(spec)) if d.severity == "error"] == []
    assert lossdsl.load(spec).ir.name == "plain"


def test_parse_drops_a_byte_order_mark_read_as_text():
    assert lossdsl.parse("\ufeff" + SPEC).name == "plain"


def test_spans_after_a_byte_order_mark_are_those_of_the_text(tmp_path: Path):
    text = "loss bom\ninput x : float[N] grad\nterm t = mean(y)\n"
    plain, marked = tmp_path / "plain.loss", tmp_path / "marked.loss"
    plain.write_text(text)
    marked.write_bytes(codecs.BOM_UTF8 + text.encode())
    [without] = lossdsl.check(str(plain))
    [with_mark] = lossdsl.check(str(marked))
    assert (with_mark.code, with_mark.span.line, with_mark.span.col) == ("E101", 3, 15)
    assert (without.span.line, without.span.col) == (3, 15)


def test_a_byte_order_mark_before_a_first_line_error_keeps_its_column(tmp_path: Path):
    spec = tmp_path / "marked.loss"
    spec.write_bytes(codecs.BOM_UTF8 + b"loss ok\ninput x : float[N] grad\nterm t = mean(x) )\n")
    [diagnostic] = lossdsl.check(str(spec))
    assert (diagnostic.code, diagnostic.span.line, diagnostic.span.col) == ("E100", 3, 18)


NOT_UTF8 = {
    # bytes, and the line:col of the first byte that is not UTF-8
    "latin-1 e acute in a comment": (b"loss s\n# caf\xe9\ninput x : float[N] grad\n", (2, 6)),
    "0xFF after text": (b"loss s\ninput x : float[N] grad \xff\n", (2, 25)),
    "utf-16 with its mark": (SPEC.encode("utf-16"), (1, 1)),
    "utf-16 without a mark": (SPEC.encode("utf-16-le"), (1, 2)),
    "a cut multi-byte sequence": (b"loss s\n# \xc3", (2, 3)),
    "after a multi-byte letter": (b"loss s\n# \xc3\xa9\xe9\n", (2, 4)),
}


@pytest.mark.parametrize("case", list(NOT_UTF8))
def test_a_spec_that_is_not_utf8_is_e100_at_the_offending_byte(case: str, tmp_path: Path):
    data, (line, col) = NOT_UTF8[case]
    spec = tmp_path / "encoded.loss"
    spec.write_bytes(data)
    [diagnostic] = lossdsl.check(str(spec))
    assert (diagnostic.code, diagnostic.span.line, diagnostic.span.col) == ("E100", line, col)
    assert "UTF-8" in diagnostic.message
    with pytest.raises(lossdsl.LossSpecError, match="E100"):
        lossdsl.load(spec)


def test_a_used_spec_that_is_not_utf8_is_e100_in_that_file(write_spec, tmp_path: Path):
    (tmp_path / "helper.loss").write_bytes(b"loss helper\ndef f(x) = x  # \xe9\n")
    spec = write_spec('loss user\nuse "helper.loss"\ninput x : float[N] grad\n')
    [diagnostic] = lossdsl.check(str(spec))
    assert diagnostic.code == "E100"
    assert Path(diagnostic.span.file).name == "helper.loss"
    assert (diagnostic.span.line, diagnostic.span.col) == (2, 17)


def test_cli_reports_an_encoding_error_in_one_line_and_exit_two(work: Path, tmp_path: Path):
    (work / "latin.loss").write_bytes(b"loss s\n# caf\xe9\ninput x : float[N] grad\n")
    result = run_cli("check", "latin.loss", cwd=work, cache=tmp_path / "cache")
    assert result.returncode == 2
    assert "latin.loss:2:6: E100 byte 0xE9 is not UTF-8" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
