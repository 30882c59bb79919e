"""`compile=True`: one compilation per spec, whatever the sizes and layouts of the inputs.

Dynamo guards a compiled graph on what it saw at its first call; left to its defaults it
recompiles when a named dim crosses 0/1 or when Inductor's CPU code picks a summation
helper for reductions longer than 4096 (`V`, or `B·T` for a token mean), and when an input
is a view (`logits[:, :-1]`) after a fresh tensor. What is done here, per call:

- each named dim is marked *unbacked*, with one `shape_id` per dim name (every input's `T`
  is one symbol) and the first size seen as Inductor's hint: nothing is specialised on a
  size, so no size recompiles. `min=1`: a batch with an empty dim runs the uncompiled graph
  (it costs nothing; a size-0 symbol would make Inductor pad every reduction);
- the graph receives an alias that is not a view (a view would make Dynamo guard on the
  caller's base tensor, `big` in `big[:B, :T]`);
- Dynamo's automatic-dynamic record of each input is told that its strides vary, so the
  first compilation makes strides symbolic instead of guarding on contiguity;
- an input whose layout the compiled code cannot index is copied into one it can: Dynamo
  fixes strides of 0 and 1 in the code it generates, so a stride of 0 (an expanded input)
  or of 1 on any dim but the last (`[B, 1]` packed as `(1, 1)`, a transposed tensor) is
  copied, into memory padded so that every stride but the last is at least 2. That copy is
  the size of the input it fixes; fresh tensors and slices of them are never copied.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx

DimKey = str | None  # the dim's name for Dynamo's shape_id, None for a literal size


class CompiledGraph:
    """Calls `torch.compile` of a loss graph with inputs prepared as described above."""

    def __init__(
        self,
        graph_module: fx.GraphModule,
        input_dims: Sequence[Sequence[Any]],
        backend: Any = "inductor",
        mode: str | None = None,
        backed: frozenset[str] = frozenset(),
        options: dict[str, Any] | None = None,
    ):
        self._eager = graph_module.forward
        # Dims a matmul contracts stay backed symbols: the backward of a contraction over an
        # unbacked dim guards on data-dependent sizes, which Dynamo cannot do.
        self._backed = backed
        how: dict[str, Any] = {"backend": backend, "mode": mode}
        if options and backend == "inductor":
            # torch.compile takes a mode or options, not both: the mode's options, then these.
            from torch._inductor import list_mode_options

            how = {"options": {**(list_mode_options(mode) if mode else {}), **options}}
        dynamic = None if compiles_once_across_sizes() else False
        self._compiled = torch.compile(graph_module.forward, dynamic=dynamic, **how)
        self._input_dims = [list(dims) for dims in input_dims]
        code = type(graph_module).forward.__code__
        self._strides_vary = _stride_record(code, code.co_varnames[1 : code.co_argcount])
        self._hints: dict[str, int] = {}

    def __call__(self, *args: Any) -> Any:
        count = len(self._input_dims)
        inputs, rest = args[:count], args[count:]
        if any(t.numel() == 0 for t in inputs):
            return self._eager(*args)
        prepared = [
            self._marked(_indexable(t), dims)
            for t, dims in zip(inputs, self._input_dims, strict=True)
        ]
        self._strides_vary(prepared)
        try:
            return self._compiled(*prepared, *rest)
        except (RuntimeError, IndexError) as error:
            # Compiled kernels check indices themselves, without naming the input: the
            # uncompiled graph says which input is wrong (its error propagates from here).
            with torch.no_grad():
                self._eager(*args)
            raise CompiledCallFailed(
                f"the compiled loss failed on inputs it accepts: {error}"
            ) from error

    def _marked(self, tensor: torch.Tensor, dims: list[Any]) -> torch.Tensor:
        alias = _Alias.apply(tensor) if tensor.requires_grad else tensor.detach()
        if not compiles_once_across_sizes():
            return alias
        for axis, key in enumerate(_dim_keys(dims, alias.dim())):
            if key in self._backed:
                torch._dynamo.maybe_mark_dynamic(alias, axis)
            elif key is not None:
                hint = self._hints.setdefault(key, alias.shape[axis])
                torch._dynamo.decorators.mark_unbacked(
                    alias, axis, shape_id=key, hint_override=hint, min=1
                )
        return alias


@functools.cache
def compiles_once_across_sizes() -> bool:
    """Whether compile=True compiles once whatever the sizes of the named dims: torch 2.13
    and later, whose unbacked sizes take a lower bound of 1. Without one, torch's own
    decompositions ask whether a size is 0 (logsumexp's `numel() == 0`), which Dynamo cannot
    answer for an unbacked symbol. Older torch compiles static shapes, one compilation per
    shape (up to Dynamo's cache limit, then the uncompiled graph): its dynamic dims were
    measured on an H200 (torch 2.11) to give reductions over all elements as one unsplit
    loop, over 1000x slower than static and off by 4e-3 in float32 (docs/performance.md, "GPU").
    Asked when a graph is compiled: importing Dynamo costs seconds an eager loss never
    needs."""
    return "min" in inspect.signature(torch._dynamo.decorators.mark_unbacked).parameters


def contracted(ir: Any) -> frozenset[str]:
    """The dims some matmul of the spec contracts."""
    return frozenset(n.attrs["dim"] for n in ir.nodes if n.op == "matmul")


class CompiledCallFailed(Exception):
    """The compiled graph failed where the uncompiled one runs: not the caller's inputs."""


class _Alias(torch.autograd.Function):
    """The same tensor, as a fresh tensor rather than a view (with other strides for its
    dims of size 1 when given), with gradients passed through."""

    @staticmethod
    def forward(
        ctx: Any, tensor: torch.Tensor, strides: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        alias = tensor.detach()
        return alias if strides is None else alias.as_strided(alias.shape, strides)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def _dim_keys(dims: list[Any], rank: int) -> list[DimKey]:
    """Per axis: the dim's name, `...0`, `...1`, … for the dims `...` stands for (leading
    unless `dims` puts it elsewhere), None for literals."""
    at = dims.index("...") if "..." in dims else 0
    before, after = dims[:at], [d for d in dims[at:] if d != "..."]
    many = [f"...{i}" for i in range(rank - len(before) - len(after))]
    return (
        [d if isinstance(d, str) else None for d in before]
        + many
        + [d if isinstance(d, str) else None for d in after]
    )


def _indexable(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor, with strides in the form the compiled code indexes: the last 1, the others
    at least 2 and strictly decreasing. A dim of size 1 takes any stride, so it gets one in
    that order (a view); any other tensor is copied into padded memory."""
    if tensor.dim() == 0:
        return tensor
    strides = _row_major_strides(tensor.shape, tensor.stride())
    if strides is None:
        padded = tensor.new_empty([max(n, 2) for n in tensor.shape])
        return padded[tuple(slice(0, n) for n in tensor.shape)].copy_(tensor)
    if strides != tensor.stride():
        # Through `_Alias`: the gradient passes through as it comes, where as_strided's own
        # backward would scatter it into a zero-filled tensor the size of the input.
        if tensor.requires_grad:
            return _Alias.apply(tensor, strides)
        return tensor.as_strided(tensor.shape, strides)
    return tensor


def _row_major_strides(shape: Sequence[int], strides: Sequence[int]) -> tuple[int, ...] | None:
    """`strides` with those of size-1 dims renumbered into the indexable form, or None."""
    chosen: list[int] = []
    below = 0  # the stride of the dim to the right (0 before the last dim)
    for axis in reversed(range(len(shape))):
        if shape[axis] != 1:
            stride = strides[axis]
        else:
            above = next((strides[a] for a in reversed(range(axis)) if shape[a] != 1), None)
            stride = 1 if below == 0 else max(below + 1, 2)
            if above is not None and stride >= above:
                return None
        if (stride != 1) if below == 0 else (stride <= below or stride < 2):
            return None
        chosen.append(stride)
        below = stride
    return tuple(reversed(chosen))


def _stride_record(code: Any, names: Sequence[str]) -> Callable[[list[torch.Tensor]], None]:
    """A function that records, before each call, that the inputs' strides vary.

    Dynamo reads this record (`torch._dynamo.pgo`) when it compiles a frame; it is private to
    torch, so on a torch without it the record is skipped and views may recompile once.
    """
    try:
        from torch._dynamo import pgo

        code_id = pgo.CodeId.make(code)
        entry, any_stride = pgo.FrameStateSizeEntry, pgo.auto_dynamic
    except (ImportError, AttributeError):  # pragma: no cover - depends on the torch version
        return lambda tensors: None
    sources = [f"L[{name!r}]" for name in names]

    def record(tensors: list[torch.Tensor]) -> None:
        state = pgo.get_code_state()[code_id].automatic_dynamic
        for source, tensor in zip(sources, tensors, strict=False):
            state[source] = entry(size=tuple(tensor.shape), stride=any_stride)

    return record
