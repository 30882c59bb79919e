"""The products of a linear head at slice sizes, in the layouts the sliced executor could use.

    python benchmarks/head_products.py                 # H=1024, V=32768, float32, this CPU
    python benchmarks/head_products.py --device cuda --dtype bf16

A sliced loss multiplies each slice of `rows` hidden states by the head `[V, H]` three
times: the logits, the rows' gradient and the head's gradient. The same numbers can be
computed in two layouts, row-major (`rows · headᵀ` → `[rows, V]`) or vocabulary-major
(`head · rowsᵀ` → `[V, rows]`), and BLAS libraries do not run both equally fast when
`rows` is small. This prints, per slice size, the time of each product over N rows in
all (N / rows products), the best of `--repeats`, and its ratio to the same product done
once over all N rows: what slicing costs in each layout.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}


def best_seconds(product: Callable[[], object], times: int, repeats: int, device: str) -> float:
    """The best of `repeats` timings of `product` run `times` times over."""
    product()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(times):
            product()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def products(rows: int, hidden: int, vocab: int, dtype: torch.dtype, device: str) -> dict:
    """name -> one product for a slice of `rows` (fresh random operands)."""
    head = torch.randn(vocab, hidden, dtype=dtype, device=device)
    states = torch.randn(rows, hidden, dtype=dtype, device=device)
    grad = torch.randn(rows, vocab, dtype=dtype, device=device)
    grad_by_vocab = grad.T.contiguous()
    head_grad = torch.zeros(vocab, hidden, dtype=dtype, device=device)
    return {
        "logits, row-major: rows · headᵀ": lambda: torch.mm(states, head.T),
        "logits, vocab-major: head · rowsᵀ": lambda: torch.mm(head, states.T),
        "rows' gradient, row-major: grad · head": lambda: torch.mm(grad, head),
        "rows' gradient, vocab-major: headᵀ · grad": lambda: torch.mm(head.T, grad_by_vocab),
        "head's gradient, row-major: += gradᵀ · rows": lambda: head_grad.addmm_(grad.T, states),
        "head's gradient, vocab-major: += grad · rows": lambda: head_grad.addmm_(
            grad_by_vocab, states
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096, help="N, all rows")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--slices", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--dtype", choices=DTYPES, default="f32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    settings = parser.parse_args()
    dtype = DTYPES[settings.dtype]
    sizes = [*settings.slices, settings.rows]
    whole: dict[str, float] = {}
    print(
        f"H={settings.hidden} V={settings.vocab} N={settings.rows} {settings.dtype} "
        f"{settings.device}, torch {torch.__version__}, {torch.get_num_threads()} threads: "
        "seconds for all N rows (x the same product over all N at once)"
    )
    table: dict[str, list[str]] = {}
    for rows in reversed(sizes):
        count = settings.rows // rows
        made = products(rows, settings.hidden, settings.vocab, dtype, settings.device)
        for name, product in made.items():
            seconds = best_seconds(product, count, settings.repeats, settings.device)
            whole.setdefault(name, seconds)
            table.setdefault(name, []).insert(0, f"{seconds:6.2f} ({seconds / whole[name]:.2f})")
    print(f"{'product':46}" + "".join(f"{f'{r} rows':>16}" for r in sizes))
    for name, cells in table.items():
        print(f"{name:46}" + "".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
