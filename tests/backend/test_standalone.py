"""`lossdsl compile`: a standalone module that imports with torch alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

import lossdsl
from lossdsl.backend.standalone import standalone_source

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
    assert "class LossOutput(NamedTuple)" in source
