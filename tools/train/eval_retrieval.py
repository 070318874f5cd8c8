#!/usr/bin/env python3
"""Retrieval accuracy of a model with `ariadne run` (greedy) on `ariadne eval tasks` instances.

Usage: eval_retrieval.py --model MODEL --tasks TASKS.jsonl [--per-cell N] [--ariadne build/bin/ariadne]
                         [--threads T] [--out results.jsonl]
TASKS.jsonl holds full instances (the default --format jsonl). For each (task, target_len) the first N
instances are run: the prompt (header + body + question, BOS added as the vocabulary says) is fed to
`ariadne run --temp 0 -n max_new_tokens`, and the prediction is scored by all-match (the fraction of the
references that occur in it, case-insensitive), as long-context-eval.md defines it. Prints a table of
accuracy (%) per task and length, and the mean over tasks per length.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--per-cell", type=int, default=5)
    ap.add_argument("--ariadne", default="build/bin/ariadne")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out")
    a = ap.parse_args()
    records = [json.loads(l) for l in open(a.tasks, encoding="utf-8") if l.strip()]
    taken, scores, rows = {}, {}, []
    out = open(a.out, "w") if a.out else None
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for r in records:
            cell = (r["task"], int(r["target_len"]))
            taken[cell] = taken.get(cell, 0) + 1
            if taken[cell] > a.per_cell:
                continue
            prompt = os.path.join(tmp, "prompt.txt")
            with open(prompt, "w", encoding="utf-8") as f:
                f.write(r["header"] + r["body"] + r["question"])
            cmd = [a.ariadne, "run", "-m", a.model, "-f", prompt, "-n", str(r["max_new_tokens"]), "--temp", "0",
                   "--json", "-t", str(a.threads)]
            res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            pred = res["text"].strip().lower()
            refs = [x.lower() for x in r["references"]]
            score = sum(x in pred for x in refs) / len(refs)
            scores.setdefault(cell, []).append(score)
            line = {"id": r["id"], "task": r["task"], "target_len": r["target_len"], "prediction": res["text"],
                    "references": r["references"], "score": score}
            if out:
                out.write(json.dumps(line) + "\n")
                out.flush()
            print(f"{r['id']}: {score:.2f} {res['text'].strip()[:60]!r}", file=sys.stderr)
    lengths = sorted({n for _, n in scores})
    tasks = sorted({t for t, _ in scores})
    print("| task | " + " | ".join(f"{n // 1024}K" for n in lengths) + " |")
    print("| --- |" + " --- |" * len(lengths))
    for t in tasks:
        cells = [scores.get((t, n)) for n in lengths]
        print(f"| {t} | " + " | ".join(f"{100 * sum(c) / len(c):.0f} ({len(c)})" if c else "-" for c in cells) + " |")
    means = []
    for n in lengths:
        per_task = [sum(scores[(t, n)]) / len(scores[(t, n)]) for t in tasks if (t, n) in scores]
        means.append(100 * sum(per_task) / len(per_task))
    print("| mean | " + " | ".join(f"{m:.1f}" for m in means) + " |")
    print(f"({sum(len(v) for v in scores.values())} instances in {time.time() - t0:.0f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
