"""Recursion without the call stack, for walks over a spec's expressions.

A spec may nest expressions thousands deep (`a0 + a1 + … + a9999`, chains of lets, defs
calling defs), past Python's recursion limit. A walk over them is written as generators:
where a recursive function would call itself, the generator `yield`s the sub-computation
(another generator) and receives its result, or has its exception raised at the `yield`,
as a call would. `run` drives the generators with a stack of its own on the heap.

A generator may also `yield` a value that is already known (a leaf it computed at once);
it gets that value straight back, so leaves need no generator of their own.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

T = TypeVar("T")
Walk = Generator[Any, Any, T]  # yields sub-walks (or known values), returns its result


def run(root: Walk[T]) -> T:
    """The result of `root`, with every sub-walk it yields run to completion first."""
    stack: list[Walk[Any]] = [root]
    value: Any = None
    error: Exception | None = None
    while True:
        frame = stack[-1]
        try:
            request = frame.send(value) if error is None else frame.throw(error)
        except StopIteration as done:
            stack.pop()
            value, error = done.value, None
            if not stack:
                return value
            continue
        except Exception as raised:  # noqa: BLE001 - passed to the caller, as a call would
            stack.pop()
            if not stack:
                raise
            value, error = None, raised
            continue
        if isinstance(request, Generator):
            stack.append(request)
            value, error = None, None
        else:
            value, error = request, None
