#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install, build, and run Ariadne's default model.
# Until Ariadne's own trained model is committed (models/), the default model is a small synthetic
# Llama written by `ariadne synth`; nothing from ../shared is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
model=build/default-model.gguf
[ -f "$model" ] || ./build/bin/ariadne synth --shape tiny --type q8_0 --seed 1 -o "$model"
./build/bin/ariadne info -m "$model"
echo
echo "forward pass over 8 tokens (logits of the last position, argmax shown):"
./build/bin/ariadne forward -m "$model" --ids 1,15,27,99,3,42,7,300
echo
echo "generation (random weights, so the ids mean nothing yet) and speed/memory on this machine:"
./build/bin/ariadne run -m "$model" --ids 1,15,27,99 -n 16 --temp 0
./build/bin/ariadne bench -m "$model" -p 64 -n 16 -r 2 -t "$(nproc)"
