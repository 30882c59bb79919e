"""The torch-free tools stay torch-free: `lossdsl fmt` and the language server start fast."""

import subprocess
import sys


def test_fmt_lsp_plot_tune_and_new_leave_torch_out() -> None:
    program = (
        "import sys\n"
        "import lossdsl.tools.fmt, lossdsl.tools.lsp, lossdsl.tools.plot, lossdsl.tools.tune\n"
        "import lossdsl.tools.new, lossdsl.tools.highlight\n"
        "from lossdsl.tools.fmt import format_text\n"
        "from lossdsl.tools.lsp import check_document\n"
        "from pathlib import Path\n"
        "format_text('loss a\\nterm t = 1\\n')\n"
        "check_document('file:///a.loss', Path('a.loss'), 'loss a\\nterm t = 1\\n')\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
