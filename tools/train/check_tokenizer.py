#!/usr/bin/env python3
"""Checks that Ariadne tokenizes exactly as Hugging Face `tokenizers` did when the model was trained.

  check_tokenizer.py sample --data DATA --out sample.jsonl
      writes test strings (held-out and training text, numbers, UUIDs, whitespace runs, non-ASCII text,
      special tokens) as JSON-string lines;
  (on the machine with `tokenizers`) train_tokenizer.py --encode tokenizer.json --jsonl sample.jsonl
      --out-ids ids.jsonl
  check_tokenizer.py compare --tokenizer tokenizer.json --sample sample.jsonl --ids ids.jsonl
      [--ariadne build/bin/ariadne]
      runs `ariadne tokenize --special --jsonl` on the sample and compares line by line; exit 1 on a
      difference.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import uuid


def make_sample(data, out):
    rng = random.Random(7)
    texts = []
    for name in ("heldout.txt", "natural/kjv.txt", "natural/jargon.txt", "natural/devil.txt",
                 "natural/war-and-peace.txt"):
        t = open(os.path.join(data, name), encoding="utf-8").read()
        for _ in range(40):
            s = rng.randrange(0, max(1, len(t) - 3000))
            texts.append(t[s:s + rng.choice([20, 200, 1000, 3000])])
    for _ in range(40):
        texts.append(f"The code is {rng.randrange(10**6, 10**7)}. Key {uuid.UUID(int=rng.getrandbits(128), version=4)}"
                     f" -> {uuid.UUID(int=rng.getrandbits(128), version=4)}; {rng.randrange(10**4, 10**5)}!")
    texts += [
        "", " ", "  leading and trailing  ", "tabs\tand\r\nCRLF\n\n\nnewlines   \n  ",
        "It's, don't, WE'LL, they'RE, I'm, you've, he'd.", "Ünïcödé: naïve café — “quoted” ‘single’ ™ ·",
        "Кириллица и 中文 and emoji 🙂🚀 mixed", "1234567890 3.14159 -42 0x1F 1,000,000",
        "<|im_start|>user\nWhat is the passkey?<|im_end|>\n<|im_start|>assistant\nThe passkey is",
        "<|endoftext|>text after a document break", "{\"a3f9e2c1-0b4d-4e8f-9a7b-112233445566\": \"x\"}",
        "ABCDE = 12345\nFGHIJ = ABCDE\n", "    indented code\n\tx = y + 1  # comment",
    ]
    with open(out, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=False) + "\n")
    print(f"{len(texts)} strings -> {out}")


def compare(tokenizer, sample, ids, ariadne):
    lines = open(sample, encoding="utf-8").read()
    got = subprocess.run([ariadne, "tokenize", "--tokenizer", tokenizer, "--special", "--jsonl"], input=lines,
                         check=True, capture_output=True, text=True).stdout.split("\n")
    want = [l for l in open(ids).read().split("\n") if l.strip()]
    got = [l for l in got if l.strip()]
    texts = [json.loads(l) for l in lines.split("\n") if l.strip()]
    if len(got) != len(want):
        sys.exit(f"ariadne gave {len(got)} lines, tokenizers {len(want)}")
    bad, n_tok = 0, 0
    for i, (g, w) in enumerate(zip(got, want)):
        g, w = json.loads(g), json.loads(w)
        n_tok += len(w)
        if g != w:
            bad += 1
            k = next((j for j in range(min(len(g), len(w))) if g[j] != w[j]), min(len(g), len(w)))
            print(f"line {i + 1} differs at token {k}: ariadne {g[k:k + 8]} tokenizers {w[k:k + 8]} "
                  f"text {texts[i][:80]!r}")
    print(f"{len(want) - bad}/{len(want)} strings identical ({n_tok} tokens)")
    sys.exit(1 if bad else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--tokenizer", required=True)
    c.add_argument("--sample", required=True)
    c.add_argument("--ids", required=True)
    c.add_argument("--ariadne", default="build/bin/ariadne")
    a = ap.parse_args()
    if a.cmd == "sample":
        make_sample(a.data, a.out)
    else:
        compare(a.tokenizer, a.sample, a.ids, a.ariadne)


if __name__ == "__main__":
    main()
