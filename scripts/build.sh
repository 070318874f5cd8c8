#!/usr/bin/env bash
# Release build of libariadne, the ariadne tool and the tests into build/ (the build contract:
# cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${ARIADNE_CMAKE_ARGS:-}
cmake --build build -j"$(nproc)"
