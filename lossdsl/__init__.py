"""lossdsl: a compiler for loss functions.

`import lossdsl` stays light: torch is imported only when a loss is built or run.
"""

from __future__ import annotations

from typing import Any

from lossdsl.api import LossSpecWarning, build_ir, check, load, load_text, parse
from lossdsl.diagnostics import Diagnostic, LossSpecError

__version__ = "0.1.0"

__all__ = [
    "load",
    "load_text",
    "parse",
    "check",
    "build_ir",
    "Diagnostic",
    "LossSpecError",
    "LossSpecWarning",
    "InputError",
    "LossOutput",
    "search_space",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "search_space":  # needs optuna (`pip install "lossdsl[tune]"`)
        from lossdsl.tools.tune import search_space

        return search_space
    # The run-time types need torch; import them on first use.
    if name in ("InputError", "LossOutput"):
        from lossdsl.quiet_torch import import_torch

        import_torch()
        from lossdsl.runtime import core

        return getattr(core, name)
    raise AttributeError(f"module 'lossdsl' has no attribute {name!r}")
