#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer (clang, build-asan/): any
# out-of-bounds access, leak, misaligned load, overflow or other undefined behaviour fails the test that
# hit it. Not in the CI test command (it adds about 8 minutes of building and 3 of testing on 2 cores);
# run it after changing kernels, parsers or memory handling. CLI runs get 900 s instead of 120 (sanitized
# code is several times slower).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DARIADNE_SANITIZE=ON > /dev/null
cmake --build build-asan -j"$(nproc)"
export ASAN_OPTIONS=detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ARIADNE_TEST_CLI_TIMEOUT=${ARIADNE_TEST_CLI_TIMEOUT:-900}
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" --timeout 1800
echo "sanitized tests passed"
