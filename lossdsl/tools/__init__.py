"""The loss designer's workbench: one module per tool (`fmt`, `analyze`, `plot`, `landscape`,
`graph`, `new`, `tune`, `lsp`), each importing its optional packages where it needs them, so
that `import lossdsl` and `lossdsl check` stay as light as they were."""

from __future__ import annotations

from typing import Any


class ToolError(Exception):
    """A tool asked for something it cannot do (a missing optional package, an unreadable
    batch file, a bad `--dims`): the CLI prints the message, never a traceback."""


def require(module: str, extra: str) -> Any:
    """Import an optional package, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        raise ToolError(
            f'this command needs the package `{package}`: pip install "lossdsl[{extra}]" ({error})'
        ) from None
