"""The test suite cannot hide itself: no test module turns a failure to import lossdsl into
skips (an import error there must fail loudly, not make hundreds of tests vanish)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _imports_lossdsl(node: ast.AST) -> bool:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Import) and any(a.name.startswith("lossdsl") for a in inner.names):
            return True
        if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("lossdsl"):
            return True
    return False


def _catches_import_errors(handler: ast.ExceptHandler) -> bool:
    caught = handler.type
    names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
    return caught is None or any(
        isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError", "Exception"}
        for n in names
    )


def hidden_import_guards(source: str) -> list[int]:
    """Lines where a failed `import lossdsl…` is caught, or turned into a skip."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Try) and any(_imports_lossdsl(s) for s in node.body):
            if any(_catches_import_errors(h) for h in node.handlers):
                found.append(node.lineno)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "importorskip"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith("lossdsl")
        ):
            found.append(node.lineno)
    return found


def test_no_test_module_skips_when_lossdsl_does_not_import():
    guarded = {
        str(path.relative_to(TESTS)): lines
        for path in sorted(TESTS.rglob("*.py"))
        if (lines := hidden_import_guards(path.read_text()))
    }
    assert guarded == {}


def test_the_check_sees_a_guard_of_the_kind_it_forbids():
    guard = "try:\n    import lossdsl\nexcept ImportError:\n    lossdsl = None\n"
    assert hidden_import_guards(guard) == [1]
    assert hidden_import_guards("import pytest\npytest.importorskip('lossdsl.api')\n") == [2]
    assert hidden_import_guards("try:\n    import numpy\nexcept ImportError:\n    pass\n") == []
