"""`lossdsl lsp`, driven over stdio by pygls's own language client: initialize, didOpen
(diagnostics published), hover, codeAction, definition across `use`, formatting."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from pygls.uris import from_fs_path

PARTNER = """loss partner
def clipped(x, lo, hi) = clamp(x, lo, hi)
"""
SPEC = """loss risky
use "partner.loss"

input p      : float[B, T] grad in [0, 1]
input target:float[B,T]

let r = clipped(p - target, -1, 1)
term fit = mean(square(r))
term nll = -mean(log(p))
"""
TIMEOUT = 60


def position(text: str, needle: str, offset: int = 0) -> types.Position:
    index = text.index(needle) + offset
    line = text.count("\n", 0, index)
    return types.Position(line=line, character=index - (text.rfind("\n", 0, index) + 1))


async def session(folder: Path) -> dict[str, Any]:
    """One editor session against the server process; what each request answered."""
    (folder / "partner.loss").write_text(PARTNER)
    spec = folder / "risky.loss"
    spec.write_text(SPEC)
    uri = from_fs_path(str(spec))
    assert uri is not None
    client = LanguageClient("lossdsl-test", "1")
    published: asyncio.Queue[types.PublishDiagnosticsParams] = asyncio.Queue()

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def diagnostics(params: types.PublishDiagnosticsParams) -> None:
        published.put_nowait(params)

    await client.start_io(sys.executable, "-m", "lossdsl", "lsp", cwd=str(folder))
    answers: dict[str, Any] = {}
    try:
        answers["initialize"] = await asyncio.wait_for(
            client.initialize_async(
                types.InitializeParams(
                    capabilities=types.ClientCapabilities(), root_uri=from_fs_path(str(folder))
                )
            ),
            TIMEOUT,
        )
        client.initialized(types.InitializedParams())
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="loss", version=1, text=SPEC
                )
            )
        )
        answers["diagnostics"] = await asyncio.wait_for(published.get(), TIMEOUT)
        document = types.TextDocumentIdentifier(uri=uri)

        async def hover(needle: str, offset: int = 0) -> Any:
            params = types.HoverParams(document, position(SPEC, needle, offset))
            return await asyncio.wait_for(client.text_document_hover_async(params), TIMEOUT)

        answers["hover r"] = await hover("square(r)", len("square("))
        answers["hover p"] = await hover("log(p)", len("log("))
        answers["hover clipped"] = await hover("clipped(")
        warning = next(d for d in answers["diagnostics"].diagnostics if d.code == "W300")
        answers["actions"] = await asyncio.wait_for(
            client.text_document_code_action_async(
                types.CodeActionParams(
                    text_document=document,
                    range=warning.range,
                    context=types.CodeActionContext(diagnostics=[warning]),
                )
            ),
            TIMEOUT,
        )
        answers["definition"] = await asyncio.wait_for(
            client.text_document_definition_async(
                types.DefinitionParams(document, position(SPEC, "clipped("))
            ),
            TIMEOUT,
        )
        answers["formatting"] = await asyncio.wait_for(
            client.text_document_formatting_async(
                types.DocumentFormattingParams(
                    text_document=document,
                    options=types.FormattingOptions(tab_size=4, insert_spaces=True),
                )
            ),
            TIMEOUT,
        )
        await asyncio.wait_for(client.shutdown_async(None), TIMEOUT)
        client.exit(None)
    finally:
        await client.stop()
    return answers


def test_the_language_server_answers_an_editor_over_stdio(tmp_path: Path) -> None:
    answers = asyncio.run(session(tmp_path))

    capabilities = answers["initialize"].capabilities
    assert capabilities.hover_provider and capabilities.definition_provider
    assert capabilities.code_action_provider and capabilities.document_formatting_provider

    published = answers["diagnostics"]
    (warning,) = [d for d in published.diagnostics if d.code == "W300"]
    assert warning.severity == types.DiagnosticSeverity.Warning
    assert (warning.range.start.line, warning.range.start.character) == (8, 17)
    assert "log of a value that can be 0" in warning.message

    r = answers["hover r"].contents.value
    assert "**let** `r` : `float[B, T]`" in r and "bounds (proven): `[-1, 1]`" in r
    p = answers["hover p"].contents.value
    assert "**input** `p` : `float[B, T]` grad in [0, 1]" in p and "`[0, 1]`" in p
    assert "def** `clipped(x, lo, hi)` (in partner.loss)" in answers["hover clipped"].contents.value

    fixes = {a.title: a for a in answers["actions"]}
    clamp = fixes["W300: replace with log(clamp(p, min=1e-8))"]
    (edit,) = clamp.edit.changes[from_fs_path(str(tmp_path / "risky.loss"))]
    assert edit.new_text == "log(clamp(p, min=1e-8))"
    assert (edit.range.start.line, edit.range.start.character, edit.range.end.character) == (
        8,
        17,
        23,
    )
    (allow,) = fixes["allow W300 on this line"].edit.changes.values()
    assert allow[0].new_text == "  # lossdsl: allow W300"

    location = answers["definition"]
    assert location.uri == from_fs_path(str((tmp_path / "partner.loss").resolve()))
    assert (location.range.start.line, location.range.start.character) == (1, 4)

    (formatted,) = answers["formatting"]
    assert "input p      : float[B, T] grad in [0, 1]\n" in formatted.new_text
    assert "input target : float[B, T]\n" in formatted.new_text
