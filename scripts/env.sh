# Sourced by the other scripts: a virtual environment in .venv with lossdsl and its tools.
# torch 2.13.0 first when torch is missing: on the project's machines that is a local CPU
# build; an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
PY=.venv/bin/python
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
if ! "$PY" -c "import lossdsl, lark, pydantic, typer, pytest, hypothesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.lossdsl-installed ]; then
  "$PY" -m pip install --quiet -e ".[dev]"
  touch .venv/.lossdsl-installed
fi
export PATH="$PWD/.venv/bin:$PATH"
