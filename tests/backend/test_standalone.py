"""`lossdsl compile`: a standalone module that imports with torch alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lossdsl
from lossdsl.backend.standalone import standalone_source
from lossdsl.resources import stdlib_index

PROGRAM = """
import json, sys
sys.modules["lossdsl"] = None  # lossdsl is installed in this environment: make it unimportable
sys.path.insert(0, {folder!r})
import torch
from {module} import {cls}
try:
    import lossdsl
    raise SystemExit("lossdsl should not be importable here")
except ImportError:
    pass
torch.manual_seed(0)
x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
target = torch.randint(0, 5, (6,))
target[0] = -100
loss_fn = {cls}(params={{"label_smoothing": 0.1}})
out = loss_fn(input=x, target=target)
out.loss.backward()
try:
    loss_fn(input=x, target=target.float())
except ValueError as error:
    message = str(error)
try:
    loss_fn(input=x, target=torch.tensor([0, 1, 2, 3, 4, 5]))
except ValueError as error:
    index_message = str(error)
print(json.dumps({{"loss": out.loss.item(), "grad": x.grad.tolist(), "error": message,
                  "index_error": index_message,
                  "classes": [n for n, v in vars(sys.modules[{module!r}]).items()
                              if isinstance(v, type) and issubclass(v, torch.nn.Module)]}}))
"""


def test_standalone_module_matches_load_without_lossdsl_importable(tmp_path: Path):
    ir = lossdsl.build_ir("cross_entropy")
    (tmp_path / "ce_loss.py").write_text(standalone_source(ir))
    program = PROGRAM.format(folder=str(tmp_path), module="ce_loss", cls="CrossEntropy")
    result = subprocess.run(
        [sys.executable, "-I", "-c", program],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    standalone = json.loads(result.stdout)

    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 5, (6,))
    target[0] = -100
    out = lossdsl.load("cross_entropy", params={"label_smoothing": 0.1})(input=x, target=target)
    out.loss.backward()
    assert standalone["loss"] == out.loss.item()
    assert torch.equal(torch.tensor(standalone["grad"], dtype=torch.float64), x.grad)
    assert standalone["classes"] == ["CrossEntropy"]  # exactly one nn.Module class
    assert "input `target` expects int[...]" in standalone["error"]
    assert standalone["index_error"] == (
        "input `target` leads to a class index outside [0, C) with C=5 (bound by `input`)"
    )


def test_class_name_is_the_spec_name_in_camel_case(write_spec):
    path = write_spec("loss grpo_h\ninput x : float[N] grad\nterm t = mean(x)\n")
    source = standalone_source(lossdsl.build_ir(str(path)))
    assert "\nclass GrpoH(LossRuntime, torch.nn.Module):" in source
    assert "class InputError(ValueError)" in source
    assert "class LossOutput(_LossOutputFields)" in source  # a NamedTuple, and `states`


ROBUST = """
loss robust
\"\"\"Huber and L1 of one residual, weighted.\"\"\"
input pred   : float[N] grad
input target : float[N]
input weight : float[N] = 1
param delta = 1.0 in (0, inf)
let r = pred - target
let small = abs(r) < delta
term huber = mean(where(small, 0.5 * square(r), delta * (abs(r) - 0.5 * delta)) * weight)
term l1 = mean(abs(r))
minimize huber + 0.1 * l1
metric frac_small = mean(small)
"""


def loss_function(source: str) -> list[str]:
    """The lines of the generated loss function (from its `def` to its `return`)."""
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("def "))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("    return "))
    return lines[start : end + 1]


def test_standalone_file_reads_as_the_loss_then_one_runtime_shared_by_every_spec(write_spec):
    source = standalone_source(lossdsl.build_ir(str(write_spec(ROBUST))))
    body = loss_function(source)
    computed = [line.split(" = ", 1)[1] for line in body if " = " in line]
    assert len(computed) == len(set(computed))  # nothing computed twice (|r| once, not twice)
    assert sum("torch.abs(" in line for line in body) == 1
    assert not any(line.rstrip().endswith("= None") for line in source.splitlines())
    assert source.index("def robust_loss(") < source.index("class LossRuntime")

    def runtime(text: str) -> str:
        return text[text.index("# ---- the run-time contract") : text.rindex("\nclass ")]

    other = standalone_source(lossdsl.build_ir("ppo"))
    assert runtime(source) == runtime(other)  # the same text in every generated module
    # (issue 14: 438 lines for a spec of this size, most of them per-spec boilerplate; the
    # shared runtime has since gained states, learned params and the step's totals)
    assert len(source.splitlines()) < 450


@pytest.mark.parametrize("name", sorted(stdlib_index()))
def test_no_standard_loss_computes_a_value_twice(name):
    """Shared sub-expressions, metrics reading what terms computed, conversions, masks and
    detaches are each emitted once (a term's constant weight is its own output tensor)."""
    body = loss_function(standalone_source(lossdsl.build_ir(name)))
    computed = [
        line.split(" = ", 1)[1]
        for line in body
        if " = " in line and not line.split(" = ", 1)[0].strip().endswith("_weight")
    ]
    repeated = {value for value in computed if computed.count(value) > 1}
    assert not repeated
