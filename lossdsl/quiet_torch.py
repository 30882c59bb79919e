"""Importing torch without a warning the user did not cause.

torch 2.x prints `UserWarning: Failed to initialize NumPy: No module named 'numpy'` while it
is imported when numpy is not installed (a class body in `torch._subclasses` converts a
tensor on import). lossdsl never uses numpy: it is only in the `dev` extra, so a clean
install has none. When lossdsl is the one importing torch (`lossdsl.load`, the CLI), that
warning is noise about lossdsl's own imports, so this one message is silenced there, and
only during that import. A program that imports torch itself first hears torch as usual.
"""

from __future__ import annotations

import sys
import warnings

_NUMPY_MISSING = "Failed to initialize NumPy"


def import_torch() -> None:
    """Import torch (once) with torch's numpy-is-missing warning silenced."""
    if "torch" in sys.modules:
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NUMPY_MISSING, category=UserWarning)
        import torch  # noqa: F401
