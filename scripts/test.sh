#!/usr/bin/env bash
# Builds everything and runs the whole test suite: unit/op tests, loaders, whole-model logits against the
# ../shared references, the CLI contract, and a bounded libFuzzer smoke run of every parser.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ARIADNE_CMAKE_ARGS="-DARIADNE_WERROR=ON ${ARIADNE_CMAKE_ARGS:-}" bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
bash scripts/fuzz-smoke.sh
bash scripts/check-format.sh
echo "all tests passed"
