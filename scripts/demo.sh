#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install, build, and run Ariadne's own default model
# (models/ariadne-default.gguf, trained by tools/train/): long documents with facts hidden in them, the
# model asked for each, answers next to the expected ones with time and KV-cache memory. Nothing from
# ../shared is needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/bin/ariadne info -m models/ariadne-default.gguf
echo
./build/bin/ariadne demo -m models/ariadne-default.gguf -t "$(nproc)"
