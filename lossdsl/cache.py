"""The on-disk cache of checked IR, so a second process skips parsing and checking.

The key covers everything the IR depends on: the spec's normalised text, the text of every
spec it `use`s (transitively), the static choices, the backend and mode, and the lossdsl
and torch versions. `LOSSDSL_CACHE=0` turns it off; `LOSSDSL_CACHE_DIR` moves it.
Torch-free: the torch version is read from the installed package's metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from functools import cache
from importlib import metadata
from pathlib import Path

from lossdsl.ir.model import SpecIR
from lossdsl.resources import stdlib_index

_USE = re.compile(r'^\s*use\s+(?:"([^"\n]+)"|([A-Za-z_][A-Za-z0-9_]*))', re.MULTILINE)
_COMMENT = re.compile(r'("""(?:.|\n)*?"""|"[^"\n]*")|#[^\n]*')


def cache_dir() -> Path | None:
    if os.environ.get("LOSSDSL_CACHE", "1") == "0":
        return None
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lossdsl"
    return Path(os.environ.get("LOSSDSL_CACHE_DIR", default))


def normalise(text: str) -> str:
    """Comments and trailing white space do not change a spec's meaning."""
    without_comments = _COMMENT.sub(lambda m: m.group(1) or "", text)
    lines = (line.rstrip() for line in without_comments.splitlines())
    return "\n".join(line for line in lines if line)


def cache_key(path: Path, choices: dict[str, str], backend: object, mode: str | None) -> str:
    digest = hashlib.sha256()
    for used in _with_uses(path):
        digest.update(normalise(used.read_text()).encode())
        digest.update(b"\0")
    versions = [_version("lossdsl"), _version("torch"), _code_fingerprint()]
    backend_name = (
        backend
        if isinstance(backend, str)
        else getattr(backend, "__qualname__", type(backend).__qualname__)
    )
    digest.update(json.dumps([sorted(choices.items()), backend_name, mode, versions]).encode())
    return digest.hexdigest()[:32]


def load_ir(key: str) -> SpecIR | None:
    folder = cache_dir()
    if folder is None:
        return None
    entry = folder / f"{key}.json"
    try:
        return SpecIR.model_validate_json(entry.read_text())
    except (OSError, ValueError):
        return None  # missing, or written by another version: rebuild


def store_ir(key: str, ir: SpecIR) -> None:
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f"{key}.{os.getpid()}.tmp"
        temporary.write_text(ir.model_dump_json())
        temporary.replace(folder / f"{key}.json")  # atomic: readers never see half a file
    except OSError:
        pass  # a read-only home is no reason to fail a load


def _with_uses(path: Path) -> list[Path]:
    found: list[Path] = []
    pending = [path.resolve()]
    while pending:
        current = pending.pop()
        if current in found or not current.is_file():
            continue
        found.append(current)
        for quoted, name in _USE.findall(current.read_text()):
            target = current.parent / quoted if quoted else stdlib_index().get(name)
            if target is not None:
                pending.append(Path(target).resolve())
    return found


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
