"""Numbers in a spec mean what they say, or are refused at check time: an integer too large
for int64 computes as a float where the op computes in floats, and the compiled module and
the standalone one run it (they raised OverflowError at call time)."""

from __future__ import annotations

import pytest
import torch

import lossdsl
from lossdsl.backend.standalone import standalone_source
from lossdsl.passes.pipeline import check_text

BIG = "100000000000000000000000000000000000000"  # 39 digits: 1e38, beyond int64
SPEC = f"""loss big_number
input x : float[N] grad in [0, 1]
input i : int[N]
term t = mean(x) * {BIG}
metric above = x < {BIG}
"""


def test_an_integer_beyond_int64_computes_as_a_float_in_float_arithmetic() -> None:
    checked = check_text(SPEC, "big.loss")
    assert checked.ok and checked.ir is not None
    read = {a for node in checked.ir.nodes for a in node.args}  # operands of some node
    literals = [checked.ir.node(a) for a in read if checked.ir.node(a).op == "const"]
    big = [n for n in literals if n.attrs["value"] >= 1e38]
    assert big and all(n.type.kind == "float" for n in big)


def test_the_module_runs_with_an_integer_beyond_int64() -> None:
    x = torch.tensor([0.25, 0.75], dtype=torch.float64)
    out = lossdsl.load_text(SPEC)(x=x, i=torch.tensor([1, 2]))
    assert out.loss.item() == pytest.approx(0.5e38)
    assert out.metrics["above"].tolist() == [True, True]


def test_the_standalone_module_runs_with_an_integer_beyond_int64() -> None:
    ir = check_text(SPEC, "big.loss").raise_for_errors()
    namespace: dict = {}
    exec(compile(standalone_source(ir), "big_number.py", "exec"), namespace)
    x = torch.tensor([0.25, 0.75], dtype=torch.float64)
    out = namespace["BigNumber"]()(x=x, i=torch.tensor([1, 2]))
    assert out.loss.item() == pytest.approx(0.5e38)


@pytest.mark.parametrize(
    "expression",
    [f"i + {BIG}", f"-{BIG}", f"where(i > 0, i, {BIG})", f"max(i, {BIG})", f"i < {BIG}"],
)
def test_an_integer_beyond_int64_where_it_stays_an_integer_is_e204(expression: str) -> None:
    text = f"loss big\ninput i : int[N]\nmetric m = {expression}\n"
    (error,) = check_text(text, "big.loss").diagnostics
    assert error.code == "E204" and "too large for int64" in error.message
    assert error.fix is not None and "float" in error.fix


def test_the_largest_int64_magnitude_written_as_a_float_is_fine() -> None:
    text = "loss big\ninput i : int[N]\nmetric m = i * 1.0e30\n"
    assert check_text(text, "big.loss").diagnostics == []


@pytest.mark.parametrize("where", ["term t = mean(x) * 1e999", "input m : float[N] = -1e999"])
def test_a_number_too_large_for_a_float_is_e204_but_inf_is_fine(where: str) -> None:
    text = f"loss big\ninput x : float[N] grad in [0, 1]\n{where}\nterm u = mean(square(x))\n"
    (error,) = check_text(text, "big.loss").diagnostics
    assert error.code == "E204" and error.fix == "write `inf` for infinity"
    assert check_text(text.replace("1e999", "inf"), "big.loss").diagnostics == []
