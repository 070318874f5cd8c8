#!/usr/bin/env python3
"""Byte-level BPE tokenizer for Ariadne's default model, trained with Hugging Face `tokenizers`.

It is trained on the literary part of the corpus (War and Peace without its held-out slice, the King
James Bible, The Devil's Dictionary, the Jargon File). The pre-tokenizer is Qwen2's split regex (digits one by one, which helps copying numbers) followed by the
byte-level mapping; Ariadne reads such a tokenizer.json as pre-tokenizer "qwen2". Three special tokens come
first: <|endoftext|> (0: beginning/end of a document, added as BOS), <|im_start|> (1) and <|im_end|> (2:
end of a chat turn). tokenizer_config.json carries BOS/EOS and a ChatML-style chat template, so the
converted GGUF has a prompt format.

Usage: train_tokenizer.py --data DATA_DIR --out TOKENIZER_DIR [--vocab-size 8192]
       train_tokenizer.py --encode TOKENIZER_DIR/tokenizer.json --jsonl IN.jsonl --out-ids OUT.jsonl
(the second form writes the ids of each JSON-string line, without BOS, to compare with `ariadne tokenize`).
"""
import argparse
import json
import os

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

# Qwen2's pre-tokenizer regex, exactly as Hugging Face writes it (Ariadne recognises this string).
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
                 "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
                 "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def train(data_dir, out_dir, vocab_size, sources):
    files = [os.path.join(data_dir, "natural", s + ".txt") for s in sources.split(",")]
    for f in files:
        if not os.path.isfile(f):
            raise SystemExit(f"{f}: missing (run prepare_corpus.py first)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train(files, trainer)
    # BOS in front of every encoded text, as Ariadne adds it (tokenizer.json's TemplateProcessing).
    tok.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|> $B:1",
        special_tokens=[("<|endoftext|>", 0)])
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "chat_template": CHAT_TEMPLATE,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    print(f"tokenizer: {tok.get_vocab_size()} tokens -> {out_dir}")
    return tok


def encode_jsonl(tokenizer_json, jsonl, out_ids):
    tok = Tokenizer.from_file(tokenizer_json)
    texts = [json.loads(line) for line in open(jsonl, encoding="utf-8") if line.strip()]
    encs = tok.encode_batch(texts, add_special_tokens=False)
    with open(out_ids, "w") as f:
        for e in encs:
            f.write(json.dumps(e.ids) + "\n")
    print(f"encoded {len(texts)} texts -> {out_ids}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data")
    ap.add_argument("--out")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--sources", default="devil,jargon,kjv,war-and-peace",
                    help="natural/NAME.txt files to train on (the literary ones; not the software manuals)")
    ap.add_argument("--encode", help="tokenizer.json to encode --jsonl with")
    ap.add_argument("--jsonl")
    ap.add_argument("--out-ids")
    a = ap.parse_args()
    if a.encode:
        encode_jsonl(a.encode, a.jsonl, a.out_ids)
    else:
        train(a.data, a.out, a.vocab_size, a.sources)


if __name__ == "__main__":
    main()
