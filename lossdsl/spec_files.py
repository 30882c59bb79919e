"""Reading spec files: the one reader behind the CLI, `lossdsl.load`, `use` and the IR cache.

A spec file is a regular file whose name ends in `.loss` (and so does the file a symbolic link
to it points at), of at most `MAX_SPEC_BYTES`, in UTF-8; a leading UTF-8 byte-order mark is
dropped. Anything else is refused before its content is read or quoted: a fifo or a device is
never opened for a read that could block, no read takes more than the cap, and a file that is
not a spec (`use "/etc/passwd"`) is named, never echoed. Torch-free and lark-free: the IR
cache checks its entries with it without loading the parser.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from lossdsl.resources import locate

SPEC_SUFFIX = ".loss"
MAX_SPEC_BYTES = 4 * 1024 * 1024  # ppo.loss is 4.4 KB; 10,000 lets are ~0.2 MB

_READ_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)  # opening a fifo must not wait for a writer
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_BINARY", 0)
)
_UTF16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


class SpecFileError(Exception):
    """A file that cannot be read as a spec. `line`/`col` place a problem inside the file
    (an encoding error); without them the problem is the file as a whole."""

    def __init__(
        self, message: str, line: int | None = None, col: int | None = None, fix: str | None = None
    ):
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.fix = fix

    @property
    def code(self) -> str:
        return "E100" if self.line is not None else "E105"


@dataclass(frozen=True)
class Reference:
    """How a spec was named: `name` looked up from the folder `base`, as a path first when
    `paths` (see `lossdsl.resources.locate`)."""

    name: str
    base: Path
    paths: bool = True

    def locate(self) -> Path | None:
        return locate(self.name, self.base, self.paths)


@dataclass(frozen=True)
class SpecFile:
    """A spec file as read: how it was named, where it was opened, what it is, its text."""

    reference: Reference
    path: Path  # as opened; a relative `use` in it is looked up from this path's folder
    resolved: Path  # symbolic links resolved: the file's identity
    text: str  # decoded, without a byte-order mark
    digest: str  # sha256 of the bytes read


def read_spec_file(path: Path, reference: Reference) -> SpecFile:
    """The spec at `path` (which `reference` named); raises `SpecFileError` saying why it is
    not one."""
    resolved = _require_spec_name(path)
    data = read_bounded(path, MAX_SPEC_BYTES, what="spec file")
    text = decode_spec(data)
    return SpecFile(reference, path, resolved, text, hashlib.sha256(data).hexdigest())


def decode_spec(data: bytes) -> str:
    """UTF-8 text without its byte-order mark; a `SpecFileError` at the first byte that is not
    UTF-8 (or NUL), with its line and column counted as the parser counts them."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    if data.startswith(_UTF16_MARKS):
        raise SpecFileError(
            "the file is UTF-16 (it starts with a UTF-16 byte-order mark); a spec must be UTF-8",
            1,
            1,
            fix="save the file as UTF-8",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line, col = _position(data[: error.start].decode("utf-8"))
        raise SpecFileError(
            f"byte 0x{data[error.start]:02X} is not UTF-8; a spec must be UTF-8 text",
            line,
            col,
            fix="save the file as UTF-8",
        ) from None
    nul = text.find("\0")
    if nul >= 0:
        line, col = _position(text[:nul])
        raise SpecFileError(
            "a NUL byte: this is not a text file (UTF-16 without a byte-order mark looks "
            "like this); a spec must be UTF-8 text",
            line,
            col,
            fix="save the file as UTF-8",
        )
    return text


def read_bounded(path: Path, limit: int, what: str, follow_symlinks: bool = True) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; `SpecFileError` otherwise. A fifo,
    a device or a folder is refused from its status, before any read; the size is checked
    again while reading, for a file that grows meanwhile."""
    flags = _READ_FLAGS if follow_symlinks else _READ_FLAGS | getattr(os, "O_NOFOLLOW", 0)
    try:
        _require_regular(path, os.stat(path, follow_symlinks=follow_symlinks), limit, what)
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        broken = os.path.islink(path)
        message = f"{path} is a broken symbolic link" if broken else f"no file {path}"
        raise SpecFileError(message) from None
    except (OSError, ValueError) as error:  # permission denied, a link with O_NOFOLLOW, a NUL…
        raise SpecFileError(f"cannot read {path}: {_reason(error)}") from None
    try:
        _require_regular(path, os.fstat(descriptor), limit, what)  # what was opened is it
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(descriptor, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise SpecFileError(f"cannot read {path}: {_reason(error)}") from None
    finally:
        os.close(descriptor)
    if size > limit:
        raise SpecFileError(_too_large(path, size, limit, what, exact=False))
    return b"".join(chunks)


def _require_spec_name(path: Path) -> Path:
    """The resolved path, when both the name used and the file it leads to are `.loss` files."""
    if path.suffix != SPEC_SUFFIX:
        raise SpecFileError(
            f"{path} is not a {SPEC_SUFFIX} file; a spec file's name ends in {SPEC_SUFFIX}"
        )
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError) as error:  # a loop of symbolic links
        raise SpecFileError(f"cannot read {path}: {error}") from None
    if resolved.suffix != SPEC_SUFFIX:
        raise SpecFileError(
            f"{path} is a link to {resolved}, which is not a {SPEC_SUFFIX} file; "
            f"a spec file's name ends in {SPEC_SUFFIX}"
        )
    return resolved


def _require_regular(path: Path, info: os.stat_result, limit: int, what: str) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise SpecFileError(f"{path} is a folder, not a {what}")
    if stat.S_ISLNK(info.st_mode):
        raise SpecFileError(f"{path} is a symbolic link; a {what} is never read through one")
    if not stat.S_ISREG(info.st_mode):
        kind = "a fifo" if stat.S_ISFIFO(info.st_mode) else "a device, socket or other special file"
        raise SpecFileError(f"{path} is {kind}, not a regular {what}")
    if info.st_size > limit:
        raise SpecFileError(_too_large(path, info.st_size, limit, what, exact=True))


def _too_large(path: Path, size: int, limit: int, what: str, exact: bool) -> str:
    amount = f"{size:,} bytes" if exact else f"more than {limit:,} bytes"
    return f"{path} is {amount}; a {what} may be at most {limit:,} bytes"


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def _position(prefix: str) -> tuple[int, int]:
    """Line and column (from 1, in characters) just after `prefix`."""
    line_start = prefix.rfind("\n") + 1
    return prefix.count("\n") + 1, len(prefix) - line_start + 1
