#!/usr/bin/env bash
# Everything a GPU machine runs, in one command (docs/performance.md, "GPU"):
#   bash scripts/gpu.sh [OUT_DIR]
# 1. the standard specs on the GPU (tests/test_device.py --device cuda), then the whole suite;
# 2. the benchmark suite at its GPU sizes; 3. the vocabulary-scale benchmark at this
# machine's CPU sizes and at LLM sizes (N=16384, H=4096, V=128256, bf16); 4. the head's
# products in both layouts at LLM sizes (whether vocabulary-major slices suit the GPU too).
# It needs a torch built for CUDA: set LOSSDSL_PYTHON to an interpreter that has one and
# lossdsl installed (`pip install -e ".[dev,bench]"`), or let env.sh set up .venv.
set -u -o pipefail
out="${1:-benchmarks/results/gpu}"
mkdir -p "$out"
if [ -n "${LOSSDSL_PYTHON:-}" ]; then python() { "$LOSSDSL_PYTHON" "$@"; }; else
    source "$(dirname "$0")/env.sh"
fi
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" || exit 1
status=0
python -m pytest -q tests/test_device.py --device cuda 2>&1 | tee "$out/device-tests.txt" || status=1
python -m pytest -q -x 2>&1 | tail -20 | tee "$out/suite.txt" || status=1
python benchmarks/run.py --device cuda --json "$out/run.json" 2>&1 | tee "$out/run.txt" || status=1
python benchmarks/vocab.py --device cuda --json "$out/vocab-cpu-sizes.json" 2>&1 | tee "$out/vocab-cpu-sizes.txt" || status=1
python benchmarks/vocab.py --llm --device cuda --json "$out/vocab-llm.json" 2>&1 | tee "$out/vocab-llm.txt" || status=1
python benchmarks/head_products.py --device cuda --dtype bf16 --rows 16384 --hidden 4096 \
    --vocab 128256 --slices 512 1024 2048 2>&1 | tee "$out/head-products.txt" || status=1
exit $status
