"""The on-disk cache of checked IR, so a second process skips parsing and checking.

An entry is keyed on the spec file as read (how it was named, where it was opened, the file
it is, the hash of its bytes), the static choices, the backend and mode, and the lossdsl and
torch versions. The entry stores that key and the record of every file the loader read for
it (each `use`: how it was named, where it led, the hash of what was read); a read serves
the entry only when its key is the one asked for and every recorded `use` still leads to a
file with the same hash. So an edited or moved helper, or an entry copied from another
spec, is never served: it is rebuilt. Reads are bounded: an entry that is not a regular
file (a symbolic link, a fifo), or larger than `MAX_ENTRY_BYTES`, is ignored.

`LOSSDSL_CACHE=0` turns the cache off; `LOSSDSL_CACHE_DIR` moves it. Torch-free and
lark-free: a hit neither parses nor imports the parser; the torch version is read from the
installed package's metadata.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from lossdsl.ir.model import SpecIR
from lossdsl.spec_files import Reference, SpecFile, SpecFileError, read_bounded, read_spec_file

ENTRY_FORMAT = 2
MAX_ENTRY_BYTES = 64 * 1024 * 1024  # an entry larger than this is neither written nor read


def cache_dir() -> Path | None:
    if os.environ.get("LOSSDSL_CACHE", "1") == "0":
        return None
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lossdsl"
    return Path(os.environ.get("LOSSDSL_CACHE_DIR", default))


def usable_cache_file(path: Path) -> bool:
    """Whether a file of the cache folder may be read and written by name (as Lark does with
    its parser tables): absent, or a regular file no larger than an entry may be. A symbolic
    link or a special file there is left alone, so nothing is read from or written through
    it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size <= MAX_ENTRY_BYTES


def cache_key(spec: SpecFile, choices: dict[str, str], backend: object, mode: str | None) -> str:
    """The key of the IR built from the spec file `spec` with these options."""
    versions = [_version("lossdsl"), _version("torch"), _code_fingerprint()]
    backend_name = (
        backend
        if isinstance(backend, str)
        else getattr(backend, "__qualname__", type(backend).__qualname__)
    )
    material = [ENTRY_FORMAT, _record(spec), sorted(choices.items()), backend_name, mode]
    return hashlib.sha256(json.dumps([*material, versions]).encode()).hexdigest()[:32]


def load_ir(
    reference: Reference, choices: dict[str, str], backend: object, mode: str | None
) -> SpecIR | None:
    """The cached IR of the spec `reference` names, when an entry for exactly the files it
    reads is there; None otherwise (the caller builds it and the errors are reported then)."""
    folder = cache_dir()
    path = reference.locate()
    if folder is None or path is None:
        return None
    try:
        spec = read_spec_file(path, reference)
    except SpecFileError:
        return None
    key = cache_key(spec, choices, backend, mode)
    entry = _read_entry(folder / f"{key}.json")
    if entry is None:
        return None
    header, ir_json = entry
    files = header.get("files")
    if header.get("key") != key or not isinstance(files, list) or not files:
        return None  # an entry of another spec, or of another format
    if files[0] != _record(spec) or not all(_still_the_same(f) for f in files[1:]):
        return None
    try:
        return SpecIR.model_validate_json(ir_json)
    except ValueError:
        return None


def store_ir(
    files: list[SpecFile],
    choices: dict[str, str],
    backend: object,
    mode: str | None,
    ir: SpecIR,
) -> None:
    """Keep `ir`, built from `files` (the spec first, then every file its `use`s read)."""
    folder = cache_dir()
    if folder is None or not files:
        return
    key = cache_key(files[0], choices, backend, mode)
    header = {"format": ENTRY_FORMAT, "key": key, "files": [_record(f) for f in files]}
    data = (json.dumps(header) + "\n" + ir.model_dump_json()).encode()
    if len(data) > MAX_ENTRY_BYTES:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # A fresh name (never an existing file or link) in the same folder, renamed over
        # the entry: readers never see half a file, and nothing is written through a link.
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(data)
            os.replace(temporary, folder / f"{key}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError:
        pass  # a read-only home is no reason to fail a load


def _record(spec: SpecFile) -> dict[str, Any]:
    reference = spec.reference
    return {
        "name": reference.name,
        "base": str(reference.base),
        "paths": reference.paths,
        "path": str(spec.path),
        "resolved": str(spec.resolved),
        "sha256": spec.digest,
    }


def _still_the_same(record: Any) -> bool:
    """The recorded `use` still leads to the same file, with the same bytes."""
    try:
        reference = Reference(record["name"], Path(record["base"]), bool(record["paths"]))
        path = reference.locate()
        if path is None or str(path) != record["path"]:
            return False
        return _record(read_spec_file(path, reference)) == record
    except (SpecFileError, KeyError, TypeError, ValueError):
        return False


def _read_entry(entry: Path) -> tuple[dict[str, Any], bytes] | None:
    """The header and the IR's JSON of an entry; None when absent, not a regular file (a
    symbolic link is never followed), too large, or malformed."""
    try:
        data = read_bounded(entry, MAX_ENTRY_BYTES, what="cache entry", follow_symlinks=False)
    except SpecFileError:
        return None
    first_line, _, ir_json = data.partition(b"\n")
    try:
        header = json.loads(first_line)
    except ValueError:
        return None
    return (header, ir_json) if isinstance(header, dict) else None


@cache
def _code_fingerprint() -> str:
    """Sizes and times of the compiler's own files: a development checkout changes without
    its version number changing, and a stale IR must not outlive the code that made it."""
    package = Path(__file__).resolve().parent
    stats = []
    for file in sorted(package.rglob("*.py")):
        info = file.stat()
        stats.append(f"{file.relative_to(package)}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(stats).encode()).hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
