#!/usr/bin/env bash
# Side-by-side speed and memory of `ariadne bench` and llama.cpp's `llama-bench` on the same GGUF files
# (issue 5). Each configuration runs in both engines back to back (Ariadne first, then llama.cpp), so the
# two see the same machine load; each process runs under /usr/bin/time for its peak resident memory.
# Writes one JSON file per run into OUT and prints the combined table (bench/compare.py); llama-bench's
# progress (the depth fill, each run) goes to OUT/TAG.llama.log.
#
#   LLAMA_BENCH=/work/llama.cpp/build/bin/llama-bench bench/vs_llamacpp.sh MODEL.gguf [MODEL.gguf ...]
#
# Environment: ARIADNE (build/bin/ariadne), LLAMA_BENCH (required), THREADS (2), PROMPT (512), GEN (64),
# DEPTHS (0,4096), REPS (3), CACHE_TYPE (f16: llama.cpp's default -ctk/-ctv), OUT (bench-results).
# The KV cache type is the same in both engines; Ariadne's default (f32) is set to CACHE_TYPE here.
set -euo pipefail
cd "$(dirname "$0")/.."
ariadne=${ARIADNE:-build/bin/ariadne}
llama=${LLAMA_BENCH:?set LLAMA_BENCH to llama.cpp\'s llama-bench}
threads=${THREADS:-2}
prompt=${PROMPT:-512}
gen=${GEN:-64}
depths=${DEPTHS:-0,4096}
reps=${REPS:-3}
cache=${CACHE_TYPE:-f16}
out=${OUT:-bench-results}
[ $# -ge 1 ] || { echo "usage: $0 MODEL.gguf [MODEL.gguf ...]" >&2; exit 2; }
mkdir -p "$out"

for model in "$@"; do
  name=$(basename "$model" .gguf)
  IFS=, read -ra ds <<< "$depths"
  for d in "${ds[@]}"; do
    tag="$name-p$prompt-n$gen-d$d-t$threads"
    echo "== $tag (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    /usr/bin/time -f '%M' -o "$out/$tag.ariadne.maxrss" \
      "$ariadne" bench -m "$model" -t "$threads" -p "$prompt" -n "$gen" -d "$d" -r "$reps" \
      --cache-type "$cache" --json > "$out/$tag.ariadne.json"
    /usr/bin/time -f '%M' -o "$out/$tag.llama.maxrss" \
      "$llama" -m "$model" -t "$threads" -p "$prompt" -n "$gen" -d "$d" -r "$reps" \
      -ctk "$cache" -ctv "$cache" --progress -o json > "$out/$tag.llama.json" 2> "$out/$tag.llama.log"
  done
done
python3 bench/compare.py "$out"
