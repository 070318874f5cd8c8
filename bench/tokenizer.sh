#!/usr/bin/env bash
# Tokenizer throughput: Ariadne vs llama.cpp's llama-tokenize on the same text and vocabulary, one thread,
# medians of RUNS runs. Not a test: numbers go into docs/benchmarks.md.
#
#   bench/tokenizer.sh [TEXT] [TOKENIZER]
#   LLAMA_TOKENIZE=/path/to/llama-tokenize LLAMA_VOCAB=/path/to/llama3-vocab.gguf bench/tokenizer.sh
#
# TEXT defaults to ../shared/data/war-and-peace.txt, TOKENIZER to the Llama-3 encoder.json (pre-tokenizer
# llama-bpe). The llama.cpp side runs only when LLAMA_TOKENIZE and LLAMA_VOCAB (a GGUF holding the same
# vocabulary) are set; both sides' ids are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
text=${1:-../shared/data/war-and-peace.txt}
tokenizer=${2:-../shared/fixtures/vocab/llama3/encoder.json}
runs=${RUNS:-5}
ariadne=${ARIADNE:-build/bin/ariadne}
pin=(taskset -c "${CPU:-0}")  # one core for both sides
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
wall() {  # seconds of one run of "$@" with stdin from $text, output to $tmp/out
  local t0 t1
  t0=$(date +%s.%N)
  "$@" < "$text" > "$tmp/out" 2> "$tmp/err"
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

bytes=$(wc -c < "$text")
for _ in $(seq "$runs"); do
  wall "${pin[@]}" "$ariadne" tokenize --timing --tokenizer "$tokenizer" --pre llama-bpe >> "$tmp/a_wall"
  python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])' < "$tmp/err" >> "$tmp/a_enc"
done
cp "$tmp/out" "$tmp/a_ids"
a_wall=$(median < "$tmp/a_wall")
a_enc=$(median < "$tmp/a_enc")
tokens=$(tr -cd ',' < "$tmp/a_ids" | wc -c)
tokens=$((tokens + 1))
echo "text: $text ($bytes bytes, $tokens tokens)"
printf "ariadne   encode only: %.3f s  %.1f MB/s   end to end (load, encode, print): %.3f s\n" \
  "$a_enc" "$(echo "$bytes / 1000000 / $a_enc" | bc -l)" "$a_wall"
if [ -n "${LLAMA_TOKENIZE:-}" ] && [ -n "${LLAMA_VOCAB:-}" ]; then
  for _ in $(seq "$runs"); do
    wall "${pin[@]}" "$LLAMA_TOKENIZE" -m "$LLAMA_VOCAB" --stdin --ids --log-disable --no-bos >> "$tmp/l_wall"
  done
  l_wall=$(median < "$tmp/l_wall")
  printf "llama.cpp end to end (load, encode, print): %.3f s   ariadne/llama.cpp speed: %.2fx\n" "$l_wall" \
    "$(echo "$l_wall / $a_wall" | bc -l)"
  if cmp -s <(tr -d '[] \n' < "$tmp/out") <(tr -d '[] \n' < "$tmp/a_ids"); then
    echo "ids: identical"
  else
    echo "ids: DIFFER"
  fi
fi
