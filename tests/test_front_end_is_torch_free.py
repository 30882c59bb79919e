"""ARCHITECTURE.md: the front end never imports torch, so `lossdsl check` starts fast."""

import subprocess
import sys


def test_front_end_modules_leave_torch_out():
    program = (
        "import sys\n"
        "import lossdsl, lossdsl.syntax, lossdsl.ir, lossdsl.passes, lossdsl.ops, "
        "lossdsl.diagnostics\n"
        "lossdsl.check('huber')\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
