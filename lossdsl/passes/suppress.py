"""Silencing warnings and notes: `# lossdsl: allow W300` comments and `--allow W301`.

A comment `# lossdsl: allow CODE[, CODE…]` at the end of a line silences those codes for
every diagnostic whose span starts on that line of that file (the spec itself or a spec
it `use`s). Codes are separated by commas and/or spaces and are case-insensitive.
Errors (E***) are never silenced; codes that do not exist are ignored. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from lossdsl.diagnostics import Diagnostic

_ALLOW = re.compile(r"#\s*lossdsl\s*:\s*allow\b(?P<codes>[^#]*)$", re.IGNORECASE)
_CODE = re.compile(r"[A-Za-z]\d{3}")


def parse_codes(text: str) -> frozenset[str]:
    """The codes named in `W300, W301 I500` (commas and/or spaces), upper-cased."""
    return frozenset(code.upper() for code in _CODE.findall(text))


def allowed_by_line(source: str) -> dict[int, frozenset[str]]:
    """Line number (from 1) -> the codes its `# lossdsl: allow …` comment names."""
    allowed: dict[int, frozenset[str]] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        found = _ALLOW.search(line)
        if found:
            codes = parse_codes(found.group("codes"))
            if codes:
                allowed[number] = codes
    return allowed


def silenceable(diagnostic: Diagnostic) -> bool:
    return diagnostic.severity != "error"


def suppress(
    diagnostics: Iterable[Diagnostic],
    sources: Mapping[str, str],
    allow: Iterable[str] = (),
) -> list[Diagnostic]:
    """`diagnostics` without those an allow comment in `sources` or a code in `allow` silences.

    `allow` holds codes silenced everywhere (`lossdsl check --allow`); each entry may itself
    list several codes (`"W300,W301"`).
    """
    everywhere = frozenset[str]().union(*(parse_codes(entry) for entry in allow))
    by_file = {file: allowed_by_line(text) for file, text in sources.items()}
    kept = []
    for diagnostic in diagnostics:
        if silenceable(diagnostic):
            here = by_file.get(diagnostic.span.file, {}).get(diagnostic.span.line, frozenset())
            if diagnostic.code in everywhere or diagnostic.code in here:
                continue
        kept.append(diagnostic)
    return kept
