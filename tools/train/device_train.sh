#!/usr/bin/env bash
# Runs on the GPU machine: trains, exports, and leaves the results in OUT in pieces of at most 15 MiB
# (the exported Hugging Face folder as hf.tar.part-aa, -ab, ...; join with `cat hf.tar.part-* | tar x`).
# Usage: device_train.sh DATA OUT [train.py options...]
set -euo pipefail
DATA=$(realpath "$1")
OUT=$(realpath "$2")
shift 2
cd "$(dirname "$0")"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c 'import torch, tokenizers; print("torch", torch.__version__, "tokenizers", tokenizers.__version__)'
RUN=${RUN:-/tmp/ariadne-train}
rm -rf "$RUN"
NGPU=$(python3 -c 'import torch; print(torch.cuda.device_count())')
if [ "$NGPU" -gt 1 ]; then
  torchrun --standalone --nproc-per-node "$NGPU" train.py --data "$DATA" --out "$RUN" "$@"
else
  python3 train.py --data "$DATA" --out "$RUN" "$@"
fi
cp "$RUN/metrics.json" "$RUN/logits.npz" "$RUN/train.log" "$OUT/"
tar -C "$RUN" -cf - hf | split -b 15m - "$OUT/hf.tar.part-"
ls -la "$OUT"
