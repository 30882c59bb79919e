# Sourced by the other scripts: a virtual environment in .venv with lossdsl and its tools.
# torch 2.13.0 first when torch is missing: on the project's machines that is a local CPU
# build; an unpinned torch would pull a multi-GB CUDA build.
# Each install step says what it installs and roughly how long it takes before it starts
# (pip itself stays quiet), and how long it took when done; when .venv is ready, nothing
# is printed. The messages go to stderr, so the scripts' own output stays as it is.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

_env_say() { echo "env.sh: $*" >&2; }
_env_started=$SECONDS
_env_done() { _env_say "  done in $((SECONDS - _env_started)) s"; _env_started=$SECONDS; }

if [ ! -x .venv/bin/python ]; then
  _env_say "first run: creating the virtual environment .venv (a few seconds)"
  python3 -m venv .venv
  _env_done
fi
PY=.venv/bin/python
if ! "$PY" -c "import torch" 2>/dev/null; then
  _env_say "installing torch 2.13.0, CPU build, into .venv (about 1-2 minutes; pip is quiet meanwhile)"
  "$PY" -m pip install --quiet "torch==2.13.0"
  _env_done
fi
# The extras are what the tests of lossdsl/tools/, examples/ and lossdsl/integrations/ run:
# the workbench, CartPole and the trainers (looked up, not imported: importing them takes
# seconds).
EXTRAS="dev,examples,hf,trl,lightning"
if ! "$PY" -c "import lossdsl, lark, pydantic, typer, pytest, hypothesis
import importlib.util, sys
sys.exit(any(importlib.util.find_spec(m) is None
             for m in ('matplotlib', 'optuna', 'pygls', 'gymnasium', 'transformers', 'trl',
                       'datasets', 'lightning')))" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.lossdsl-installed ]; then
  _env_say "installing lossdsl (editable) with lark, pydantic, typer, the dev tools" \
      "(pytest, hypothesis, ruff, mypy, numpy), the workbench's extras (matplotlib, optuna," \
      "pygls) and the trainers the examples and integrations use (gymnasium, transformers," \
      "trl, lightning) into .venv (about 2-4 minutes)"
  "$PY" -m pip install --quiet -e ".[$EXTRAS]"
  touch .venv/.lossdsl-installed
  _env_done
fi
export PATH="$PWD/.venv/bin:$PATH"
