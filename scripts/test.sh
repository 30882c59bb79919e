#!/usr/bin/env bash
# The whole check: lint, format, types of the torch-free front end, then the tests.
source "$(dirname "$0")/env.sh"
ruff check lossdsl tests benchmarks scripts examples
ruff format --check lossdsl tests benchmarks scripts examples
mypy lossdsl/syntax lossdsl/ir lossdsl/ops lossdsl/passes lossdsl/analysis lossdsl/diagnostics.py lossdsl/resources.py lossdsl/cache.py lossdsl/spec_files.py lossdsl/output_files.py
python -m pytest -q "$@"
