#!/usr/bin/env bash
# Long-prompt memory check (issue 4): the first 32768 Llama-3 tokens of War and Peace through `ariadne run`
# on a synthetic Llama-3.2-1B (q8_0), and the process's peak resident memory against the memory Ariadne
# predicted before starting (weights + KV cache + activations, the estimate `ariadne bench` prints). Not a
# test: the numbers go into docs/benchmarks.md. Prints the two and their ratio; exits 1 when the peak is not
# within TOLERANCE (10%) of the prediction.
#
#   bench/long_prompt.sh                     # 32768 tokens, -c 33000 (slow on a small CPU)
#   TOKENS=512 bench/long_prompt.sh          # a quick run of the same steps
#
# Environment: TOKENS (prompt tokens, 32768), CTX (context, 33000 for 32768 tokens, else TOKENS + 232),
# N_PREDICT (16), THREADS (all cores), BATCH (512), CACHE_TYPE (f32), SHAPE (llama-3.2-1b), TYPE (q8_0),
# TOLERANCE (0.10), WORK (where the synthetic model and the ids are kept between runs:
# /tmp/ariadne-long-prompt), MODEL (use this GGUF instead of synthesizing one), ARIADNE (the binary:
# build/bin/ariadne), TEXT (../shared/data/war-and-peace.txt).
#
# The synthetic model has random weights and no tokenizer (llama.cpp's `none`), so the text is tokenized
# with the Llama-3 vocabulary of ../shared/fixtures/vocab/llama3 (encoder.json + vocab.bpe, pre-tokenizer
# llama-bpe: the ids Llama-3.2-1B's own tokenizer gives) and fed as ids (`run --ids-file`).
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${TOKENS:-32768}
if [ -n "${CTX:-}" ]; then ctx=$CTX; elif [ "$tokens" = 32768 ]; then ctx=33000; else ctx=$((tokens + 232)); fi
n_predict=${N_PREDICT:-16}
threads=${THREADS:-$(nproc)}
batch=${BATCH:-512}
cache_type=${CACHE_TYPE:-f32}
shape=${SHAPE:-llama-3.2-1b}
type=${TYPE:-q8_0}
tolerance=${TOLERANCE:-0.10}
work=${WORK:-/tmp/ariadne-long-prompt}
ariadne=${ARIADNE:-build/bin/ariadne}
text=${TEXT:-../shared/data/war-and-peace.txt}
vocab=../shared/fixtures/vocab/llama3/encoder.json

[ -x "$ariadne" ] || { echo "long_prompt.sh: $ariadne is not built (set ARIADNE)" >&2; exit 2; }
[ -f "$text" ] || { echo "long_prompt.sh: $text is absent" >&2; exit 2; }
mkdir -p "$work"

model=${MODEL:-$work/$shape-$type.gguf}
if [ ! -f "$model" ]; then
  echo "synthesizing $model ($shape, $type)" >&2
  "$ariadne" synth --shape "$shape" --type "$type" -t "$threads" -o "$model.part"
  mv "$model.part" "$model"
fi

# The whole text's ids once, then the first $tokens of them as a JSON array.
all_ids=$work/war-and-peace.llama3.json
if [ ! -f "$all_ids" ]; then
  "$ariadne" tokenize --tokenizer "$vocab" --pre llama-bpe < "$text" > "$all_ids.part"
  mv "$all_ids.part" "$all_ids"
fi
ids=$work/prompt-$tokens.json
python3 - "$all_ids" "$tokens" "$ids" <<'EOF'
import json, sys
ids = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
if n > len(ids):
    sys.exit(f"long_prompt.sh: the text has only {len(ids)} tokens, fewer than TOKENS={n}")
json.dump(ids[:n], open(sys.argv[3], "w"))
EOF

echo "run: $shape $type, $tokens prompt tokens, -c $ctx, -n $n_predict, -t $threads, -b $batch, KV $cache_type" >&2
"$ariadne" run -m "$model" --ids-file "$ids" -c "$ctx" -n "$n_predict" -t "$threads" -b "$batch" \
  --cache-type "$cache_type" --temp 0 --json > "$work/run.json"

python3 - "$work/run.json" "$tolerance" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
tolerance = float(sys.argv[2])
m = r["memory"]
p = m["predicted_bytes"]
peak = m["peak_rss_bytes"]
base = m["baseline_rss_bytes"]
mib = lambda b: b / 1048576
t = r["timings"]
print(f"prompt {r['n_prompt']} tokens, context {r['n_ctx']}, generated {r['n_generated']} ({r['stop_reason']})")
print(f"prefill {t['prefill_seconds']:.1f} s ({t['prefill_tokens_per_second']:.1f} tok/s), "
      f"decode {t['decode_seconds']:.1f} s ({t['decode_tokens_per_second']:.2f} tok/s)")
print(f"KV cache held {mib(r['kv_cache']['bytes']):.2f} MiB of {mib(r['kv_cache']['bytes_capacity']):.2f} MiB "
      f"({r['kv_cache']['type']})")
print(f"predicted {mib(p['total']):.2f} MiB (weights {mib(p['weights']):.2f} + KV {mib(p['kv']):.2f} + "
      f"activations {mib(p['activations']):.2f})")
print(f"measured  peak resident {mib(peak):.2f} MiB ({mib(base):.2f} MiB before loading the model)")
ratio = peak / p["total"]
print(f"ratio peak / predicted: {ratio:.4f} (without the baseline: {(peak - base) / p['total']:.4f})")
ok = abs(ratio - 1) <= tolerance
print(f"within {tolerance:.0%}: {'yes' if ok else 'NO'}")
sys.exit(0 if ok else 1)
EOF
