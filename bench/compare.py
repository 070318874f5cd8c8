#!/usr/bin/env python3
"""Combines the JSON files of bench/vs_llamacpp.sh into one markdown table: median tokens/s of Ariadne and
llama.cpp per test, their ratio, and each process's peak resident memory (from /usr/bin/time)."""
import json
import pathlib
import statistics
import sys


def tests(path):
    data = json.loads(path.read_text())
    for r in data:
        kind = f"pp{r['n_prompt']}" if r["n_prompt"] > 0 else f"tg{r['n_gen']}"
        if r.get("n_depth", 0) > 0:
            kind += f" @ d{r['n_depth']}"
        yield kind, statistics.median(r["samples_ts"]), len(r["samples_ts"])


def max_rss_mib(path):
    try:
        return int(path.read_text().split()[-1]) / 1024
    except (OSError, ValueError, IndexError):
        return float("nan")


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "bench-results")
    rows = []
    for a in sorted(out.glob("*.ariadne.json")):
        tag = a.name[: -len(".ariadne.json")]
        l = out / f"{tag}.llama.json"
        if not l.exists():
            continue
        model = tag.split("-p")[0]
        ours = {k: (v, n) for k, v, n in tests(a)}
        theirs = {k: (v, n) for k, v, n in tests(l)}
        rss_a = max_rss_mib(out / f"{tag}.ariadne.maxrss")
        rss_l = max_rss_mib(out / f"{tag}.llama.maxrss")
        for k in ours:
            if k in theirs:
                rows.append((model, k, ours[k][0], theirs[k][0], ours[k][1], rss_a, rss_l))
    print("| model | test | Ariadne t/s | llama.cpp t/s | ratio | runs | Ariadne peak MiB | llama.cpp peak MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m, k, a, l, n, ra, rl in rows:
        print(f"| {m} | {k} | {a:.2f} | {l:.2f} | {a / l:.2f} | {n} | {ra:.0f} | {rl:.0f} |")


if __name__ == "__main__":
    main()
