#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for a bounded time from its seed
# corpus, with a fixed libFuzzer seed so a run is repeatable. Any crash, leak or sanitizer report fails the
# run. FUZZ_SECONDS sets the time per target, FUZZ_SEED the seed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DARIADNE_FUZZ=ON -DARIADNE_BUILD_TESTS=OFF -DARIADNE_NATIVE=OFF > /dev/null
targets=$(cd fuzz && ls fuzz_*.cpp | sed 's/\.cpp$//')
cmake --build build-fuzz -j"$(nproc)" --target $targets
for t in $targets; do
  corpus=$(mktemp -d)
  [ -d "fuzz/corpus/$t" ] && cp -r "fuzz/corpus/$t/." "$corpus/"
  echo "fuzz: $t for ${seconds}s"
  ./build-fuzz/bin/"$t" -seed="${FUZZ_SEED:-1}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 \
    "$corpus" 2> "build-fuzz/$t.log" || { tail -n 60 "build-fuzz/$t.log"; rm -rf "$corpus"; exit 1; }
  grep -E "^#[0-9]+.*DONE" "build-fuzz/$t.log" | tail -n 1 || true
  rm -rf "$corpus"
done
