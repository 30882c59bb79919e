#!/usr/bin/env bash
# The main job end to end: check a standard spec, compile it to a standalone module,
# and train a small model with the loss, eager and through torch.compile.
source "$(dirname "$0")/env.sh"
echo "== lossdsl check cross_entropy ppo: what the checker proves and warns about"
lossdsl check cross_entropy ppo
out=$(mktemp -d)
echo "== lossdsl compile cross_entropy: a standalone module that needs only torch"
lossdsl compile cross_entropy -o "$out/cross_entropy_loss.py"
echo "== training a tiny policy with the standard PPO spec, eager then compiled"
python scripts/demo.py "$out/cross_entropy_loss.py"
