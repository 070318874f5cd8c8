#!/usr/bin/env python3
"""Compares PyTorch's logits (logits.npz from train.py) with `ariadne forward` on a model.

Usage: compare_logits.py --logits logits.npz --model MODEL [--ariadne build/bin/ariadne] [--threads N]
logits.npz holds ids_K (int32 token ids) and logits_K (float32 [positions, vocab]: every position for short
prompts, the last position for long ones, as positions_K says). Prints the max abs difference per prompt and
overall, and exits 1 when it exceeds --tol.
"""
import argparse
import json
import subprocess
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--logits", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--ariadne", default="build/bin/ariadne")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    z = np.load(a.logits)
    keys = sorted(k[4:] for k in z.files if k.startswith("ids_"))
    worst = 0.0
    report = []
    for k in keys:
        ids = z["ids_" + k]
        ref = z["logits_" + k]
        all_pos = ref.shape[0] > 1
        cmd = [a.ariadne, "forward", "-m", a.model, "--ids", ",".join(str(int(i)) for i in ids), "--json",
               "-t", str(a.threads)]
        if all_pos:
            cmd.append("--all-positions")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        got = np.asarray(json.loads(out)["logits"], dtype=np.float64)
        if not all_pos:
            got = got[-1:]
        if got.shape != ref.shape:
            sys.exit(f"prompt {k}: ariadne gave {got.shape}, PyTorch {ref.shape}")
        d = np.abs(got - ref.astype(np.float64))
        agree = float(np.mean(np.argmax(got, -1) == np.argmax(ref, -1)))
        report.append({"prompt": k, "tokens": int(len(ids)), "positions": int(ref.shape[0]),
                       "max_abs_diff": float(d.max()), "mean_abs_diff": float(d.mean()),
                       "max_abs_logit": float(np.abs(ref).max()), "argmax_agreement": agree})
        worst = max(worst, float(d.max()))
    if a.json:
        print(json.dumps({"prompts": report, "max_abs_diff": worst}, indent=1))
    else:
        for r in report:
            print(f"prompt {r['prompt']}: {r['tokens']} tokens, {r['positions']} positions: max |diff| "
                  f"{r['max_abs_diff']:.3g}, mean {r['mean_abs_diff']:.3g} (max |logit| {r['max_abs_logit']:.3g}),"
                  f" argmax agreement {r['argmax_agreement']:.3f}")
        print(f"overall max |diff| {worst:.3g} (tolerance {a.tol:g})")
    sys.exit(0 if worst <= a.tol else 1)


if __name__ == "__main__":
    main()
