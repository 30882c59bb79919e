"""`lossdsl lsp`: a language server (pygls) for `.loss` files, over standard input/output.

- Diagnostics: the checker's, published on open, change and save.
- Quick fixes: a diagnostic's fix as an edit where the fix is text that can stand at the
  diagnostic's place (an expression, a name, a whole line), offered only when re-checking
  the edited text shows the diagnostic gone; for warnings and notes, `# lossdsl: allow CODE`
  at the end of the line.
- Hover: a value's dtype and dims, where it is declared, and the bounds the interval analysis
  proves for it; a def's signature; an op's signature.
- Go to definition: a value's declaration, a def in this file or in a spec it `use`s, the
  file a `use` names.
- Formatting: `lossdsl fmt`.
Torch-free: the server checks specs but never builds a loss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lossdsl.diagnostics import Diagnostic, Span
from lossdsl.ir import SpecIR
from lossdsl.syntax import ast
from lossdsl.tools import require

SEVERITY = {"error": 1, "warning": 2, "info": 3}  # LSP's DiagnosticSeverity
BACKQUOTED = re.compile(r"`([^`]+)`")


# ---- what the server knows about one document ------------------------------------------------


@dataclass
class Document:
    uri: str
    path: Path
    text: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    ir: SpecIR | None = None
    spec: ast.SpecAST | None = None
    used: list[ast.SpecAST] = field(default_factory=list)


def check_document(uri: str, path: Path, text: str) -> Document:
    from lossdsl.ir.loader import load_text
    from lossdsl.passes import check_text

    checked = check_text(text, str(path), path.parent)
    loaded = load_text(text, str(path), path.parent)
    return Document(uri, path, text, checked.diagnostics, checked.ir, loaded.spec, loaded.used)


def lsp_range(span: Span) -> dict[str, Any]:
    """LSP counts lines and characters from 0; a span from 1 with an exclusive end."""
    return {
        "start": {"line": span.line - 1, "character": span.col - 1},
        "end": {"line": span.end_line - 1, "character": max(span.end_col - 1, span.col - 1)},
    }


def lsp_diagnostics(document: Document) -> list[dict[str, Any]]:
    """The document's diagnostics as LSP dicts; one found in a used file is shown at the top
    with its place in that file."""
    found = []
    for d in document.diagnostics:
        here = d.span.file == str(document.path)
        message = d.message if here else f"{d.span}: {d.message}"
        message += "".join(f"\n{note}" for note in d.notes)
        if d.fix:
            message += f"\nfix: {d.fix}"
        span = d.span if here else Span(d.span.file, 1, 1, 1, 1)
        found.append(
            {
                "range": lsp_range(span),
                "severity": SEVERITY[d.severity],
                "code": d.code,
                "source": "lossdsl",
                "message": message,
                "data": {"fix": d.fix} if here and d.fix else None,
            }
        )
    return found


# ---- quick fixes -----------------------------------------------------------------------------


@dataclass
class QuickFix:
    title: str
    span: Span  # the text replaced
    new_text: str


def quick_fixes(document: Document, code: str, span: Span, fix: str | None) -> list[QuickFix]:
    """The edits that remove the diagnostic `code` at `span`, checked by re-checking."""
    candidates: list[QuickFix] = []
    if fix:
        for replacement in _replacements(fix):
            candidates.append(QuickFix(f"{code}: replace with {replacement}", span, replacement))
        line_span = _line_span(document.text, span.line, span.file)
        if line_span is not None:
            indent = re.match(r"\s*", _line(document.text, span.line)).group()  # type: ignore[union-attr]
            candidates.append(QuickFix(f"{code}: {fix}", line_span, indent + fix))
    working = [c for c in candidates if _removes(document, code, span, c)]
    if code[0] in "WI":
        allow = _allow_edit(document.text, span, code)
        if allow is not None:
            working.append(allow)
    return working


def _replacements(fix: str) -> list[str]:
    """The fix itself, or the one name or expression it quotes in backquotes."""
    found = [fix]
    quoted = BACKQUOTED.findall(fix)
    if len(quoted) == 1:
        found.append(quoted[0])
    return list(dict.fromkeys(found))


def _line(text: str, line: int) -> str:
    lines = text.split("\n")
    return lines[line - 1] if 1 <= line <= len(lines) else ""


def _line_span(text: str, line: int, file: str) -> Span | None:
    content = _line(text, line)
    if not content.strip():
        return None
    return Span(file, line, 1, line, len(content) + 1)


def _apply(text: str, span: Span, new_text: str) -> str:
    lines = text.split("\n")
    start = sum(len(x) + 1 for x in lines[: span.line - 1]) + span.col - 1
    end = sum(len(x) + 1 for x in lines[: span.end_line - 1]) + span.end_col - 1
    return text[:start] + new_text + text[end:]


def _removes(document: Document, code: str, span: Span, fix: QuickFix) -> bool:
    """Whether the edited text parses and no longer has `code` where it was, nor a new error."""
    from lossdsl.passes import check_text

    edited = _apply(document.text, fix.span, fix.new_text)
    if edited == document.text:
        return False
    checked = check_text(edited, str(document.path), document.path.parent)
    before = {d.code for d in document.diagnostics if d.severity == "error"}
    for d in checked.diagnostics:
        if d.code == code and d.span.file == span.file and d.span.line == span.line:
            return False
        if d.severity == "error" and d.code not in before:
            return False
    return True


def _allow_edit(text: str, span: Span, code: str) -> QuickFix | None:
    from lossdsl.passes.suppress import allowed_by_line

    content = _line(text, span.line)
    if not content.strip():
        return None
    end = Span(span.file, span.line, len(content) + 1, span.line, len(content) + 1)
    if span.line in allowed_by_line(text):
        return QuickFix(f"allow {code} on this line", end, f", {code}")
    return QuickFix(f"allow {code} on this line", end, f"  # lossdsl: allow {code}")


# ---- names: hover and definitions ------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    kind: str  # "value" | "call" | "use" | "declaration"
    name: str
    span: Span
    scope: str | None = None  # the def whose body it is in


def name_at(spec: ast.SpecAST, line: int, col: int) -> Found | None:
    """The name at a place (lines and columns from 1)."""
    for decl in spec.decls:
        if not _inside(decl.span, line, col):
            continue
        name_span = getattr(decl, "name_span", None)
        if name_span is not None and _inside(name_span, line, col):
            return Found("declaration", decl.name, name_span)  # type: ignore[union-attr]
        if isinstance(decl, ast.Use):
            return Found("use", decl.target, decl.span)
        scope = decl.name if isinstance(decl, ast.DefDecl) else None
        for expression in _expressions(decl):
            found = _name_in(expression, line, col, scope)
            if found is not None:
                return found
    return None


def _expressions(decl: Any) -> list[Any]:
    if isinstance(decl, ast.DefDecl):
        return [decl.body]
    if isinstance(decl, ast.Minimize):
        return [decl.objective]
    return [e for e in (getattr(decl, "value", None), getattr(decl, "default", None)) if e]


def _name_in(e: Any, line: int, col: int, scope: str | None) -> Found | None:
    span = getattr(e, "span", None)
    if span is None or not _inside(span, line, col):
        return None
    if isinstance(e, ast.Name):
        return Found("value", e.id, e.span, scope)
    if isinstance(e, ast.Call) and _inside(e.func_span, line, col):
        return Found("call", e.func, e.func_span, scope)
    children: list[Any] = []
    if isinstance(e, ast.Call):
        children = [*e.args, *(k.value for k in e.kwargs)]
    elif isinstance(e, ast.Binary):
        children = [e.left, e.right]
    elif isinstance(e, ast.Unary):
        children = [e.operand]
    elif isinstance(e, ast.ListExpr):
        children = list(e.items)
    for child in children:
        found = _name_in(child, line, col, scope)
        if found is not None:
            return found
    return None


def _inside(span: Span, line: int, col: int) -> bool:
    return (span.line, span.col) <= (line, col) < (span.end_line, span.end_col) or (
        (line, col) == (span.end_line, span.end_col) and span.line == span.end_line
    )


def hover_text(document: Document, line: int, col: int) -> str | None:
    """Markdown about the name at a place."""
    if document.spec is None:
        return None
    found = name_at(document.spec, line, col)
    if found is None:
        return None
    if found.kind == "call":
        return _call_hover(document, found.name)
    if found.kind == "use":
        target = _use_target(document, found.name)
        return f"`use {found.name}`: {target}" if target else None
    if found.scope is not None:
        definition = _def(document, found.scope)
        if definition is not None and found.name in definition[0].params:
            return f"`{found.name}`: an argument of `def {found.scope}`"
    return _value_hover(document, found.name)


def _value_hover(document: Document, name: str) -> str | None:
    ir = document.ir
    if name == "step":
        return "`step`: the training step, a float scalar the caller passes (default 0)"
    if ir is None:
        return None
    from lossdsl.passes.analysis import Analysis

    declaration = _declaration(ir, name)
    if declaration is None:
        return None
    kind, node_id, extra = declaration
    node = ir.node(node_id)
    facts = Analysis(ir)[node_id]
    lines = [f"**{kind}** `{name}` : `{node.type}`{extra}"]
    lines.append(f"bounds (proven): `{facts.interval}`")
    if kind == "input":
        spec = ir.input(name)
        lines.append(f"declared: `{spec.dtype}[{', '.join(map(str, spec.dims))}]`")
    return "\n\n".join(lines)


def _declaration(ir: SpecIR, name: str) -> tuple[str, int, str] | None:
    for spec in ir.inputs:
        if spec.name == name:
            notes = (" grad" if spec.grad else "") + (f" in {spec.range}" if spec.range else "")
            return "input", spec.node, notes
    for param in ir.params:
        if param.name == name:
            default = "a schedule of `step`" if param.default is None else f"{param.default:g}"
            shown = f" = {default}" + (f" in {param.range}" if param.range else "")
            return "param", param.node, shown
    for kind, values in (("let", ir.lets), ("term", ir.terms), ("metric", ir.metrics)):
        for value in values:
            if value.name == name:
                return kind, value.node, ""
    return None


def _call_hover(document: Document, name: str) -> str | None:
    definition = _def(document, name)
    if definition is not None:
        decl, file = definition
        return f"**def** `{decl.name}({', '.join(decl.params)})` (in {file})"
    from lossdsl.ops import OPS

    op = OPS.get(name)
    if op is None:
        return None
    return f"**op** `{op.signature()}`"


def _def(document: Document, name: str) -> tuple[ast.DefDecl, str] | None:
    for spec in [s for s in (document.spec, *document.used) if s is not None]:
        for decl in spec.decls:
            if isinstance(decl, ast.DefDecl) and decl.name == name:
                return decl, spec.file
    return None


def _use_target(document: Document, target: str) -> Path | None:
    from lossdsl.spec_files import Reference

    quoted = any(
        isinstance(d, ast.Use) and d.target == target and d.is_path
        for d in (document.spec.decls if document.spec else ())
    )
    return Reference(target, document.path.parent, paths=quoted).locate()


def definition(document: Document, line: int, col: int) -> tuple[Path, Span] | None:
    """Where the name at a place is declared: (file, span of its name)."""
    if document.spec is None:
        return None
    found = name_at(document.spec, line, col)
    if found is None:
        return None
    if found.kind == "use":
        target = _use_target(document, found.name)
        return (target, Span(str(target), 1, 1, 1, 1)) if target else None
    if found.kind == "call":
        definition = _def(document, found.name)
        if definition is None:
            return None
        called, file = definition
        return _file_path(document, file), called.name_span
    for decl in document.spec.decls:
        named = (ast.InputDecl, ast.ParamDecl, ast.ValueDecl)
        if isinstance(decl, named) and decl.name == found.name:
            return document.path, decl.name_span
    return None


def _file_path(document: Document, file: str) -> Path:
    """A file name as the loader shows it (relative to the working directory), as a path."""
    path = Path(file)
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


# ---- the server ------------------------------------------------------------------------------


def make_server() -> Any:
    require("pygls", "lsp")
    from lsprotocol import types
    from pygls.lsp.server import LanguageServer
    from pygls.uris import from_fs_path, to_fs_path

    import lossdsl

    server = LanguageServer("lossdsl", lossdsl.__version__)
    documents: dict[str, Document] = {}

    def refresh(uri: str) -> None:
        text = server.workspace.get_text_document(uri).source
        document = check_document(uri, Path(to_fs_path(uri) or uri), text)
        documents[uri] = document
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(
                uri=uri,
                diagnostics=[_converted(types, d) for d in lsp_diagnostics(document)],
            )
        )

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: Any, params: types.DidOpenTextDocumentParams) -> None:
        refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: Any, params: types.DidChangeTextDocumentParams) -> None:
        refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: Any, params: types.DidSaveTextDocumentParams) -> None:
        refresh(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: Any, params: types.HoverParams) -> types.Hover | None:
        document = documents.get(params.text_document.uri)
        if document is None:
            return None
        position = params.position
        text = hover_text(document, position.line + 1, position.character + 1)
        if text is None:
            return None
        return types.Hover(contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def goto(ls: Any, params: types.DefinitionParams) -> types.Location | None:
        document = documents.get(params.text_document.uri)
        if document is None:
            return None
        position = params.position
        found = definition(document, position.line + 1, position.character + 1)
        if found is None:
            return None
        path, span = found
        return types.Location(
            uri=from_fs_path(str(path)) or str(path), range=_lsp_range(types, span)
        )

    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]),
    )
    def code_action(ls: Any, params: types.CodeActionParams) -> list[types.CodeAction]:
        document = documents.get(params.text_document.uri)
        if document is None:
            return []
        actions = []
        for diagnostic in params.context.diagnostics:
            start, end = diagnostic.range.start, diagnostic.range.end
            span = Span(
                str(document.path),
                start.line + 1,
                start.character + 1,
                end.line + 1,
                end.character + 1,
            )
            fix = (diagnostic.data or {}).get("fix") if isinstance(diagnostic.data, dict) else None
            for quick in quick_fixes(document, str(diagnostic.code), span, fix):
                edit = types.TextEdit(range=_lsp_range(types, quick.span), new_text=quick.new_text)
                actions.append(
                    types.CodeAction(
                        title=quick.title,
                        kind=types.CodeActionKind.QuickFix,
                        diagnostics=[diagnostic],
                        edit=types.WorkspaceEdit(changes={document.uri: [edit]}),
                    )
                )
        return actions

    @server.feature(types.TEXT_DOCUMENT_FORMATTING)
    def formatting(ls: Any, params: types.DocumentFormattingParams) -> list[types.TextEdit]:
        from lossdsl.diagnostics import LossSpecError
        from lossdsl.tools.fmt import FormatError, format_text

        text = server.workspace.get_text_document(params.text_document.uri).source
        try:
            formatted = format_text(text)
        except (LossSpecError, FormatError):
            return []
        if formatted == text:
            return []
        lines = text.split("\n")
        whole = types.Range(
            start=types.Position(line=0, character=0),
            end=types.Position(line=len(lines) - 1, character=len(lines[-1])),
        )
        return [types.TextEdit(range=whole, new_text=formatted)]

    return server


def _lsp_range(types: Any, span: Span) -> Any:
    data = lsp_range(span)
    return types.Range(start=types.Position(**data["start"]), end=types.Position(**data["end"]))


def _converted(types: Any, d: dict[str, Any]) -> Any:
    return types.Diagnostic(
        range=types.Range(
            start=types.Position(**d["range"]["start"]), end=types.Position(**d["range"]["end"])
        ),
        severity=types.DiagnosticSeverity(d["severity"]),
        code=d["code"],
        source=d["source"],
        message=d["message"],
        data=d["data"],
    )


def serve() -> None:
    """Run the server on standard input and output until the client says exit."""
    make_server().start_io()
