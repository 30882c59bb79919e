#!/usr/bin/env bash
# Everything a GPU machine runs, in one command (docs/performance.md, "GPU"):
#   bash scripts/gpu.sh [OUT_DIR [STEP...]]
# Steps, in this order unless named:
#   device-tests     the standard specs and a bf16 head on the GPU (tests/test_device.py)
#   vocab-llm        benchmarks/vocab.py at LLM sizes (N=16384 H=4096 V=128256 bf16), with
#                    slices of 128 and 2048 rows (eager) beside "auto"
#   head-products    the head's three products in both layouts at LLM sizes
#   profile          benchmarks/compiled_profile.py: where compiled huber, GRPO and sliced
#                    cross entropy spend their time, static shapes beside dynamic ones
#   suite-bench      benchmarks/run.py at its GPU sizes
#   vocab-cpu-sizes  benchmarks/vocab.py at this project's CPU sizes
#   backend-tests    the tests of the torch side (backend, runtime, RL and preference
#                    specs) under that machine's torch, on its CPU (the rest of the suite
#                    needs the optional extras, which such a machine may not have)
# Each step's output goes to OUT_DIR/STEP.txt.
# GPU_SECONDS, when set, is the time the whole run may take: a step that would start with
# none left is skipped (and says so), one that runs out is stopped.
# It needs a torch built for CUDA: set LOSSDSL_PYTHON to an interpreter that has one and
# lossdsl's requirements (`pip install -e ".[dev,bench]"`), or let env.sh set up .venv.
set -u -o pipefail
out="${1:-benchmarks/results/gpu}"
shift || true
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(device-tests vocab-llm head-products profile suite-bench vocab-cpu-sizes backend-tests)
mkdir -p "$out"
if [ -n "${LOSSDSL_PYTHON:-}" ]; then python() { "$LOSSDSL_PYTHON" "$@"; }; else
    source "$(dirname "$0")/env.sh"
fi
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'
print(torch.cuda.get_device_name(), 'torch', torch.__version__)" || exit 1
export PYTHONUNBUFFERED=1
deadline=$((SECONDS + ${GPU_SECONDS:-1000000}))

# Inductor compiles each test's graphs: tests in parallel where pytest-xdist is there
workers() { python -c "import xdist" 2>/dev/null && echo "-n 8"; }

step() {
    case "$1" in
    device-tests) python -m pytest -q tests/test_device.py --device cuda $(workers) ;;
    vocab-llm) python benchmarks/vocab.py --llm --device cuda --rounds 5 --chunk 128 \
        --chunk 2048 --json "$out/vocab-llm.json" ;;
    head-products) python benchmarks/head_products.py --device cuda --dtype bf16 --rows 16384 \
        --hidden 4096 --vocab 128256 --slices 128 512 2048 ;;
    profile) python benchmarks/compiled_profile.py suite huber grpo --device cuda --tables "$out" &&
        python benchmarks/compiled_profile.py vocab cross_entropy --device cuda --tables "$out" ;;
    suite-bench) python benchmarks/run.py --device cuda --rounds 5 --no-front-end \
        --json "$out/run.json" ;;
    vocab-cpu-sizes) python benchmarks/vocab.py --device cuda --rounds 5 \
        --json "$out/vocab-cpu-sizes.json" ;;
    backend-tests) python -m pytest -q -rs tests/backend tests/runtime tests/test_rl_specs.py \
        tests/test_preference_variants.py $(workers) ;;
    *) echo "no step $1" && return 2 ;;
    esac
}

status=0
for name in "${steps[@]}"; do
    left=$((deadline - SECONDS))
    if [ "$left" -le 5 ]; then
        echo "== $name: skipped, no time left" | tee "$out/$name.txt"
        status=1
        continue
    fi
    echo "== $name ($left s left)"
    started=$SECONDS
    # the function runs in a subshell so that `timeout` can stop it with all it started
    timeout "$left" bash -c "$(declare -f step workers python 2>/dev/null); out='$out'; step $name" \
        2>&1 | tee "$out/$name.txt"
    code=${PIPESTATUS[0]}
    echo "== $name: exit $code after $((SECONDS - started)) s" | tee -a "$out/$name.txt"
    [ "$code" -eq 0 ] || status=1
done
exit $status
