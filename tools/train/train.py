#!/usr/bin/env python3
"""Trains Ariadne's default model on one or more GPUs (bf16), then exports it.

Reads DATA (see README.md): natural/*.txt[.xz] (natural text), heldout.txt[.xz] (held-out text for
perplexity), tasks/*.jsonl[.xz] (training task samples: {"prompt", "answer", "task", "target_len", ...}),
tasks-eval/*.jsonl[.xz] (a few samples from other seeds, for a retrieval check after training) and
tokenizer/ (tokenizer.json, tokenizer_config.json from train_tokenizer.py).

Every row of a batch is CTX tokens: a window of natural text (--natural-frac), a synthetic
associative-recall row (--recall-frac), or task samples packed one after the other (each starting with
BOS), the rest filled with natural text. The loss is the weighted mean next-token loss of the text
(natural text and the last --question-tokens prompt tokens of a task sample at weight 1, the rest of the
prompts at --prompt-weight) plus --answer-weight times the mean loss on task answer tokens plus
--recall-weight times the mean loss on recall answers. Numbers in answers get fresh random values each
time a sample is used (--randomize-numbers), so the model must retrieve them. A curriculum caps the task length (--curriculum)
early in training. The batch of step s depends only on (--seed, s, rank), so a resumed run
sees the batches it would have seen.

Writes OUT/hf/ (config.json, model.safetensors in bf16, tokenizer.json, tokenizer_config.json),
OUT/logits.npz (PyTorch float32 logits for a few prompts, to compare with `ariadne forward`),
OUT/metrics.json (losses, held-out perplexity, retrieval accuracy, timings) and OUT/train.log.

Single GPU:  python3 train.py --data DATA --out OUT
Several:     torchrun --nproc-per-node N train.py --data DATA --out OUT
"""
import argparse
import contextlib
import glob
import json
import lzma
import math
import os
import queue
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F

from model import Llama, LlamaConfig, export_hf, load_safetensors

BOS = 0  # <|endoftext|>: BOS, and the end of a document or plain answer
IM_END = 2  # <|im_end|>: the end of a chat turn


def amp(device):
    """bf16 autocast on the GPU, nothing elsewhere (CPU tests)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def read_text(path):
    if path.endswith(".xz"):
        with lzma.open(path, "rt", encoding="utf-8") as f:
            return f.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def read_jsonl(path):
    return [json.loads(line) for line in read_text(path).split("\n") if line.strip()]


class Logger:
    def __init__(self, path, enabled):
        self.f = open(path, "a") if enabled else None
        self.t0 = time.time()

    def __call__(self, msg):
        if self.f is None:
            return
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


class Data:
    """Token streams and task samples, tokenized with the trained tokenizer."""

    def __init__(self, data_dir, log, max_len):
        from tokenizers import Tokenizer
        t0 = time.time()
        self.tok = Tokenizer.from_file(os.path.join(data_dir, "tokenizer", "tokenizer.json"))
        files = sorted(glob.glob(os.path.join(data_dir, "natural", "*.txt*")))
        texts = [read_text(p) for p in files]
        encs = self.tok.encode_batch(texts, add_special_tokens=False)
        parts = []
        for p, e in zip(files, encs):
            parts.append(np.array([BOS] + e.ids, dtype=np.uint16))
            log(f"natural {os.path.basename(p)}: {len(e.ids)} tokens")
        self.natural = np.concatenate(parts)
        held = [p for p in glob.glob(os.path.join(data_dir, "heldout.txt*"))]
        self.heldout = np.array([BOS] + self.tok.encode(read_text(held[0]), add_special_tokens=False).ids,
                                dtype=np.uint16)
        log(f"natural: {len(self.natural)} tokens; held-out: {len(self.heldout)} tokens")
        self.tasks = self._load_tasks(sorted(glob.glob(os.path.join(data_dir, "tasks", "*.jsonl*"))), max_len,
                                      log)
        self.digit_ids = np.array([self.tok.token_to_id(str(d)) for d in range(10)], dtype=np.int64)
        self.digit_of = np.full(self.tok.get_vocab_size(), -1, dtype=np.int64)
        self.digit_of[self.digit_ids] = np.arange(10)
        vocab = self.tok.get_vocab()
        self.word_ids = np.array(sorted(i for t, i in vocab.items()
                                        if len(t) >= 4 and t[0] == "\u0120" and t[1:].isalpha() and t[1:].islower()
                                        and t[1:].isascii()), dtype=np.int64)
        self.tok_is, self.tok_space, self.tok_dot = (self.tok.token_to_id(t) for t in ("\u0120is", "\u0120", "."))
        log(f"recall rows: {len(self.word_ids)} word keys; ' is' {self.tok_is}, ' ' {self.tok_space}, '.' {self.tok_dot}")
        self.eval_records = []
        for p in sorted(glob.glob(os.path.join(data_dir, "tasks-eval", "*.jsonl*"))):
            self.eval_records += read_jsonl(p)
        log(f"data ready in {time.time() - t0:.1f}s ({len(self.eval_records)} evaluation samples)")

    def encode_prompt(self, prompt):
        return [BOS] + self.tok.encode(prompt, add_special_tokens=False).ids

    @staticmethod
    def prompt_of(r):
        return r["prompt"] if "prompt" in r else r["header"] + r["body"] + r["question"]

    def _load_tasks(self, files, max_len, log):
        records = []
        for p in files:
            records += read_jsonl(p)
        if not records:
            log("no task samples")
            return None
        prompts = self.tok.encode_batch([self.prompt_of(r) for r in records], add_special_tokens=False)
        answers = self.tok.encode_batch([r["answer"] for r in records], add_special_tokens=False)
        toks, starts, lens, ans, names = [], [], [], [], []
        off, dropped = 0, 0
        task_names = sorted({r.get("task", "?") for r in records})
        for r, pe, ae in zip(records, prompts, answers):
            # The answer ends the turn: <|im_end|> in chat prompts, <|endoftext|> in plain ones.
            ids = [BOS] + pe.ids + ae.ids + [IM_END if r.get("parse_special") else BOS]
            if len(ids) + 1 > max_len + 1 or not ae.ids:
                dropped += 1
                continue
            toks.append(np.array(ids, dtype=np.uint16))
            starts.append(off)
            lens.append(len(ids))
            ans.append(1 + len(pe.ids))
            names.append(task_names.index(r.get("task", "?")))
            off += len(ids)
        order = np.argsort(np.array(lens), kind="stable")
        t = {
            "tokens": np.concatenate(toks),
            "start": np.array(starts, dtype=np.int64)[order],
            "len": np.array(lens, dtype=np.int64)[order],
            "answer": np.array(ans, dtype=np.int64)[order],
            "task": np.array(names, dtype=np.int64)[order],
            "names": task_names,
        }
        counts = {n: int((t["task"] == i).sum()) for i, n in enumerate(task_names)}
        log(f"tasks: {len(lens)} samples, {off} tokens, lengths {min(lens)}..{max(lens)}, dropped {dropped}; {counts}")
        return t

    def natural_window(self, rng, n):
        s = int(rng.integers(0, len(self.natural) - n))
        return self.natural[s:s + n]

    def randomize_numbers(self, rng, seq, answer_start):
        """Gives every number (run of >= 4 digit tokens) that the answer contains a fresh random value of the
        same length, everywhere it occurs in the sample, so that values are never learnt by heart. Digits
        are single tokens with this tokenizer (Qwen2 pre-tokenizer), so this works on token ids."""
        is_digit = self.digit_of[seq] >= 0
        if not is_digit[answer_start:].any():
            return
        edges = np.flatnonzero(np.diff(np.concatenate(([0], is_digit.astype(np.int8), [0]))))
        runs = list(zip(edges[0::2], edges[1::2]))
        wanted = {seq[s:e].tobytes() for s, e in runs if s >= answer_start and e - s >= 4}
        fresh = {}
        for s, e in runs:
            key = seq[s:e].tobytes()
            if key not in wanted:
                continue
            if key not in fresh:
                digits = rng.integers(0, 10, e - s)
                if self.digit_of[seq[s]] != 0:
                    digits[0] = rng.integers(1, 10)
                fresh[key] = self.digit_ids[digits]
            seq[s:e] = fresh[key]

    def recall_row(self, rng, n):
        """A synthetic associative-recall row of n tokens (dense retrieval practice): facts "KEY1 KEY2 is
        DDDDD." with random word keys and 5-digit values, and, half of the time, a query that repeats an
        earlier fact (any distance back); the query's digits are answers. Returns (tokens, answer mask)."""
        m = n // 10 + 2
        is_q = rng.random(m) < 0.5
        is_q[0] = False
        facts_before = np.cumsum(~is_q) - (~is_q)
        n_new = int((~is_q).sum())
        keys = rng.choice(self.word_ids, (n_new, 2))
        vals = self.digit_ids[rng.integers(0, 10, (n_new, 5))]
        ref = np.where(is_q, np.floor(rng.random(m) * facts_before).astype(np.int64), facts_before)
        items = np.empty((m, 10), dtype=np.int64)
        items[:, 0:2] = keys[ref]
        items[:, 2] = self.tok_is
        items[:, 3] = self.tok_space
        items[:, 4:9] = vals[ref]
        items[:, 9] = self.tok_dot
        mask = np.zeros((m, 10), dtype=np.int8)
        mask[:, 4:9] = np.where(is_q, 2, 0)[:, None]
        return items.reshape(-1)[:n], mask.reshape(-1)[:n]

    def batch(self, seed, step, rank, rows, ctx, natural_frac, cap, prompt_weight, randomize, recall_frac=0.0,
              question_tokens=0):
        """One step's rows: tokens [rows, ctx+1] int64, LM weights [rows, ctx] float32 (1 for natural text
        and the last question_tokens prompt tokens of a task sample, prompt_weight for the rest of task
        prompts, 0 for answers) and the answer mask [rows, ctx] int8 (1: task answer, 2: recall answer),
        both for the predicted tokens."""
        rng = np.random.default_rng([seed, step, rank])
        x = np.empty((rows, ctx + 1), dtype=np.int64)
        w = np.ones((rows, ctx + 1), dtype=np.float32)
        ans = np.zeros((rows, ctx + 1), dtype=np.int8)
        t = self.tasks
        for r in range(rows):
            u = rng.random()
            if u < recall_frac:
                x[r], ans[r] = self.recall_row(rng, ctx + 1)
                w[r] = 0.0
                continue
            if t is None or u < recall_frac + natural_frac:
                x[r] = self.natural_window(rng, ctx + 1)
                continue
            pos = 0
            limit = min(cap, ctx + 1)
            while True:
                room = min(ctx + 1 - pos, limit)
                n_fit = int(np.searchsorted(t["len"], room, side="right"))
                if n_fit == 0:
                    break
                i = int(rng.integers(0, n_fit))
                s, n, a = t["start"][i], t["len"][i], t["answer"][i]
                seq = t["tokens"][s:s + n].copy()
                if randomize > 0 and rng.random() < randomize:
                    self.randomize_numbers(rng, seq, a)
                x[r, pos:pos + n] = seq
                w[r, pos:pos + a] = prompt_weight
                w[r, pos + max(1, a - question_tokens):pos + a] = 1.0
                w[r, pos + a:pos + n] = 0.0
                ans[r, pos + a:pos + n] = 1
                pos += n
            if pos < ctx + 1:
                # Filler after the packed samples: context only, like the prompts (no memorising).
                x[r, pos:] = self.natural_window(rng, ctx + 1 - pos)
                w[r, pos:] = prompt_weight
        return x, w[:, 1:], ans[:, 1:]


def lr_at(step, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, (step - a.warmup) / max(1, a.steps - a.warmup))
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def curriculum_cap(step, a):
    """Longest task sample allowed at this step: --curriculum 'F1:L1,F2:L2' = up to L1 tokens until F1 of
    the steps, up to L2 until F2, the full context after."""
    p = step / max(1, a.steps)
    for item in a.curriculum.split(","):
        if not item:
            continue
        f, n = item.split(":")
        if p < float(f):
            return int(n)
    return a.ctx + 1


class LossModel(torch.nn.Module):
    """Loss = weighted mean next-token loss over text + answer_weight * mean loss over task answer tokens
    + recall_weight * mean loss over recall answer tokens."""

    def __init__(self, model, answer_weight, recall_weight):
        super().__init__()
        self.model = model
        self.answer_weight = answer_weight
        self.recall_weight = recall_weight

    def forward(self, x, y, w, ans):
        logits = self.model(x).float()
        ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1), reduction="none").view(y.shape)
        a1 = (ans == 1).float()
        a2 = (ans == 2).float()
        lm = (ce * w).sum() / w.sum().clamp(min=1.0)
        ans_loss = (ce * a1).sum() / a1.sum().clamp(min=1.0)
        rec_loss = (ce * a2).sum() / a2.sum().clamp(min=1.0)
        hit = (logits.argmax(-1) == y).float()
        stats = torch.stack([lm, ans_loss, rec_loss, (hit * a1).sum(), a1.sum(), (hit * a2).sum(), a2.sum()]).detach()
        return lm + self.answer_weight * ans_loss + self.recall_weight * rec_loss, stats


@torch.no_grad()
def heldout_loss(model, data, ctx, device, tail=None):
    """Mean next-token loss over non-overlapping CTX-token windows of the held-out text: over every
    position, or over the last `tail` positions of each window (the evaluation suite's perplexity)."""
    h = data.heldout
    total, count = 0.0, 0
    for s in range(0, len(h) - ctx - 1, ctx):
        x = torch.tensor(h[s:s + ctx + 1].astype(np.int64), device=device)[None]
        with amp(device):
            logits = model(x[:, :-1]).float()
        ce = F.cross_entropy(logits[0], x[0, 1:], reduction="none")
        if tail:
            ce = ce[-tail:]
        total += float(ce.sum())
        count += ce.numel()
    return total / max(1, count)


@torch.no_grad()
def greedy(model, ids, max_new, stop_ids, device):
    out = []
    x = torch.tensor([ids], device=device)
    for _ in range(max_new):
        with amp(device):
            logits = model(x)[0, -1].float()
        t = int(logits.argmax())
        if t in stop_ids:
            break
        out.append(t)
        x = torch.cat([x, torch.tensor([[t]], device=device)], dim=1)
    return out


def retrieval_check(model, data, device, log, max_ctx, per_cell):
    """Greedy answers for the evaluation samples, scored by all-match (each reference a substring of the
    prediction, case-insensitive). Returns {task: {target_len: accuracy}}."""
    stop = {0, 2}
    scores = {}
    taken = {}
    for r in data.eval_records:
        cell = (r.get("task", "?"), int(r.get("target_len", 0)))
        taken[cell] = taken.get(cell, 0) + 1
        if taken[cell] > per_cell:
            continue
        ids = data.encode_prompt(data.prompt_of(r))
        if len(ids) >= max_ctx:
            continue
        gen = greedy(model, ids, min(int(r.get("max_new_tokens", 32)), 48, max_ctx - len(ids)), stop, device)
        pred = data.tok.decode(gen, skip_special_tokens=True).strip().lower()
        refs = [str(x).lower() for x in r.get("references", [])]
        score = sum(ref in pred for ref in refs) / max(1, len(refs))
        key = (r.get("task", "?"), int(r.get("target_len", 0)))
        scores.setdefault(key, []).append(score)
    out = {}
    for (task, n), v in sorted(scores.items()):
        out.setdefault(task, {})[str(n)] = round(100.0 * sum(v) / len(v), 1)
    for task, v in out.items():
        log(f"retrieval {task}: " + ", ".join(f"{n}: {s}%" for n, s in v.items()))
    return out


@torch.no_grad()
def dump_logits(hf_dir, data, device, path, log):
    """float32 logits of the exported (bf16) weights for a few prompts, computed in float32."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cfg = LlamaConfig(**{k: v for k, v in json.load(open(os.path.join(hf_dir, "config.json"))).items()
                         if k in LlamaConfig.__dataclass_fields__})
    m = Llama(cfg)
    m.load_state_dict({k: v.float() for k, v in load_safetensors(os.path.join(hf_dir, "model.safetensors")).items()})
    m = m.to(device).float().eval()
    prompts = {"a_short": (data.heldout[:48].astype(np.int64), True),
               "b_heldout_1k": (data.heldout[1000:2024].astype(np.int64), False),
               "c_heldout_4k": (data.heldout[5000:5000 + cfg.max_position_embeddings].astype(np.int64), False)}
    if data.eval_records:
        r = min(data.eval_records, key=lambda r: abs(int(r.get("target_len", 0)) - 2048))
        prompts["d_task"] = (np.array(data.encode_prompt(data.prompt_of(r)), dtype=np.int64), False)
    out = {}
    for k, (ids, all_pos) in prompts.items():
        logits = m(torch.tensor(ids, device=device)[None])[0].float().cpu().numpy()
        out["ids_" + k] = ids.astype(np.int32)
        out["logits_" + k] = logits if all_pos else logits[-1:]
    np.savez(path, **out)
    log(f"logits of {len(prompts)} prompts -> {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=6400, help="optimizer steps (the LR schedule's length)")
    ap.add_argument("--batch", type=int, default=16, help="rows of CTX tokens per step and GPU")
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--natural-frac", type=float, default=0.2, help="share of rows that are natural text")
    ap.add_argument("--answer-weight", type=float, default=1.0,
                    help="weight of the mean answer-token loss against the mean text loss")
    ap.add_argument("--prompt-weight", type=float, default=0.05,
                    help="LM weight of task prompt tokens (haystack, question), against 1 for natural text")
    ap.add_argument("--question-tokens", type=int, default=64,
                    help="the last N prompt tokens of a task sample (question, lead-in) get LM weight 1")
    ap.add_argument("--recall-frac", type=float, default=0.2, help="share of rows of synthetic associative recall")
    ap.add_argument("--recall-weight", type=float, default=1.0, help="weight of the mean recall-answer loss")
    ap.add_argument("--eval-per-cell", type=int, default=2,
                    help="retrieval check: instances per (task, length) from tasks-eval/")
    ap.add_argument("--randomize-numbers", type=float, default=1.0,
                    help="probability of giving a task sample's answer numbers fresh random values")
    ap.add_argument("--curriculum", default="0.1:1100,0.3:2100")
    ap.add_argument("--time-limit", type=float, default=0, help="minutes of training before stopping early (0: none)")
    ap.add_argument("--ckpt", help="checkpoint file, written every --ckpt-every minutes and at the end")
    ap.add_argument("--ckpt-every", type=float, default=2.0)
    ap.add_argument("--resume", help="checkpoint to resume from")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--skip-retrieval", action="store_true")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=1408)
    ap.add_argument("--rope-theta", type=float, default=100000.0)
    a = ap.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.distributed.init_process_group("nccl")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(a.out, exist_ok=True)
    log = Logger(os.path.join(a.out, "train.log"), rank == 0)
    log(f"args: {vars(a)}; world {world}; device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}; "
        f"torch {torch.__version__}")
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    data = Data(a.data, log, a.ctx)
    cfg = LlamaConfig(vocab_size=data.tok.get_vocab_size(), hidden_size=a.hidden, intermediate_size=a.ffn,
                      num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                      head_dim=a.hidden // a.heads, max_position_embeddings=a.ctx, rope_theta=a.rope_theta)
    model = Llama(cfg)
    model.init_weights(a.seed)
    model.to(device)
    log(f"model: {model.param_count() / 1e6:.2f}M parameters, {cfg}")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    extra = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8,
                            **extra)
    step = 0
    train_seconds = 0.0
    if a.resume:
        ck = torch.load(a.resume, map_location=device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, train_seconds = ck["step"], ck.get("train_seconds", 0.0)
        log(f"resumed from {a.resume} at step {step}")

    lm = LossModel(model, a.answer_weight, a.recall_weight)
    if world > 1:
        lm = torch.nn.parallel.DistributedDataParallel(lm)
    step_fn = lm if a.no_compile or device.type != "cuda" else torch.compile(lm)

    def save_ckpt():
        if a.ckpt and rank == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                        "train_seconds": train_seconds, "args": vars(a)}, a.ckpt + ".tmp")
            os.replace(a.ckpt + ".tmp", a.ckpt)
            log(f"checkpoint at step {step} -> {a.ckpt}")

    history = []
    t_start = time.time()
    t_ckpt = time.time()
    tokens_done = 0
    last = (time.time(), 0)
    stopped_early = False
    natural_seen = 0

    def make_batch(s):
        return curriculum_cap(s, a), data.batch(a.seed, s, rank, a.batch, a.ctx, a.natural_frac,
                                                curriculum_cap(s, a), a.prompt_weight, a.randomize_numbers,
                                                a.recall_frac, a.question_tokens)

    # Batches are built on a background thread, a few steps ahead of the GPU.
    pending = queue.Queue(maxsize=6)
    threading.Thread(target=lambda: [pending.put(make_batch(s)) for s in range(step, a.steps)], daemon=True).start()
    while step < a.steps:
        cap, (xb, wb, ab) = pending.get()
        natural_seen += int((wb == 1.0).sum()) * world
        x = torch.from_numpy(xb).to(device, non_blocking=True)
        w = torch.from_numpy(wb).to(device, non_blocking=True)
        ans = torch.from_numpy(ab).to(device, non_blocking=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        with amp(device):
            loss, stats = step_fn(x[:, :-1], x[:, 1:], w, ans)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_done += xb.shape[0] * a.ctx * world
        if step % a.log_every == 0 or step == a.steps:
            el = time.time() - t_start
            st = stats.tolist()
            rec = {"step": step, "loss": round(float(loss), 4), "lm_loss": round(st[0], 4),
                   "answer_loss": round(st[1], 4), "answer_acc": round(st[3] / max(1.0, st[4]), 4),
                   "recall_loss": round(st[2], 4), "recall_acc": round(st[5] / max(1.0, st[6]), 4),
                   "cap": cap, "lr": round(lr_at(step - 1, a), 6), "gnorm": round(float(gnorm), 3),
                   "natural_epochs": round(natural_seen / len(data.natural), 2),
                   "tok_per_s": round((tokens_done - last[1]) / max(time.time() - last[0], 1e-9)),
                   "seconds": round(train_seconds + el, 1)}
            last = (time.time(), tokens_done)
            history.append(rec)
            log(json.dumps(rec))
        if a.eval_every and step % a.eval_every == 0 and rank == 0:
            hl = heldout_loss(model, data, a.ctx, device)
            log(f"step {step}: held-out loss {hl:.4f}, perplexity {math.exp(hl):.2f}")
            history.append({"step": step, "heldout_loss": round(hl, 4)})
        if a.ckpt and time.time() - t_ckpt > a.ckpt_every * 60:
            save_ckpt()
            t_ckpt = time.time()
        if a.time_limit and train_seconds + (time.time() - t_start) > a.time_limit * 60 and step < a.steps:
            log(f"time limit reached at step {step} of {a.steps}")
            stopped_early = True
            break
    train_seconds += time.time() - t_start
    save_ckpt()
    if rank != 0:
        torch.distributed.destroy_process_group()
        return

    model.eval()
    metrics = {"steps": step, "planned_steps": a.steps, "stopped_early": stopped_early,
               "train_seconds": round(train_seconds, 1), "tokens": tokens_done, "params": model.param_count(),
               "config": cfg.hf_config(), "args": vars(a), "history": history}
    hl = heldout_loss(model, data, a.ctx, device)
    metrics["heldout_loss"] = round(hl, 4)
    metrics["heldout_ppl"] = round(math.exp(hl), 3)
    hl512 = heldout_loss(model, data, a.ctx, device, tail=512)
    metrics["heldout_ppl_last512"] = round(math.exp(hl512), 3)
    log(f"final held-out loss {hl:.4f}, perplexity {math.exp(hl):.2f} (all positions of {a.ctx}-token windows), "
        f"{math.exp(hl512):.2f} (their last 512 positions)")
    hf_dir = os.path.join(a.out, "hf")
    export_hf(model, hf_dir, os.path.join(a.data, "tokenizer"))
    log(f"exported -> {hf_dir}")
    dump_logits(hf_dir, data, device, os.path.join(a.out, "logits.npz"), log)
    if not a.skip_retrieval and data.eval_records:
        t0 = time.time()
        metrics["retrieval"] = retrieval_check(model, data, device, log, a.ctx, a.eval_per_cell)
        log(f"retrieval check took {time.time() - t0:.1f}s")
    with open(os.path.join(a.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    log("done")
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
