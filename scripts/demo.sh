#!/usr/bin/env bash
# The main job end to end: check a standard spec, compile it to a standalone module,
# and train a small model with the loss, eager and through torch.compile.
source "$(dirname "$0")/env.sh"
lossdsl check cross_entropy ppo
out=$(mktemp -d)
lossdsl compile cross_entropy -o "$out/cross_entropy_loss.py"
python scripts/demo.py "$out/cross_entropy_loss.py"
