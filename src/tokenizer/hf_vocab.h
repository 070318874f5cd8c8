// Vocabularies in Hugging Face / OpenAI file layouts:
//   - vocab.json + merges.txt (GPT-2 / Qwen style in HF repos) or encoder.json + vocab.bpe (OpenAI's GPT-2
//     release, also used for the Llama-3 fixture), with an optional tokenizer_config.json beside them;
//   - tokenizer.json (the `tokenizers` library's single-file format), model.type "BPE":
//       * byte-level (pre_tokenizer ByteLevel, or Sequence of Split(regex) + ByteLevel) ->
//       TokenizerModel::Bpe,
//         Vocab::pre chosen by the Split regex (Llama-3's -> "llama-bpe", Qwen2's -> "qwen2", GPT-2's or a
//         plain ByteLevel -> "gpt-2"). Any other regex is an Error that quotes the pattern: a custom
//         pattern cannot be carried in a Vocab (Vocab::pre must stay a name llama.cpp knows).
//       * SentencePiece-style (Llama-2 / Mistral: Metaspace pre-tokenizer or a normalizer replacing " " by
//         "▁", byte_fallback) -> TokenizerModel::Spm, with scores = -(rank of the first merge that
//         produces the token), so that llama.cpp's score-driven merging reproduces the ranked merges.
//         Tokens no merge produces get a score below every merge; <0xNN> tokens are Byte tokens.
//   Added tokens: special -> Control, else UserDefined. Ids missing from a sparse vocabulary become
//   "[PAD<id>]" Unused tokens (as llama.cpp's converter does).
// tokenizer_config.json supplies bos_token / eos_token (strings or {"content": ...}), add_bos_token,
// add_eos_token, clean_up_tokenization_spaces and chat_template (a string, or a list of {name, template}
// of which "default" is taken); chat_template.jinja in the same folder takes precedence over the latter.
// Every malformed file throws Error naming the file and the field.
#pragma once

#include <string>
#include <string_view>

#include "tokenizer/vocab.h"

namespace ariadne {

// vocab_path: vocab.json / encoder.json (token -> id); merges_path: merges.txt / vocab.bpe (one "a b" merge
// per line in rank order; a first line starting with "#version" is skipped). pre: the tokenizer.ggml.pre
// name of the pre-tokenizer ("gpt-2", "llama-bpe", "qwen2", ...).
Vocab vocab_from_bpe_files(const std::string& vocab_path, const std::string& merges_path,
                           const std::string& pre);

// A tokenizer.json file, with tokenizer_config.json / chat_template.jinja from its folder when present.
Vocab vocab_from_tokenizer_json(const std::string& path);

// The same from the text of a tokenizer.json (no side files); name stands for the path in messages.
Vocab vocab_from_tokenizer_json_text(std::string_view json, const std::string& name);

// A Hugging Face model folder: tokenizer.json if present, else vocab.json + merges.txt (pre-tokenizer
// "gpt-2", or "qwen2" when tokenizer_config.json names a Qwen2 tokenizer class).
Vocab vocab_from_hf_folder(const std::string& dir);

}  // namespace ariadne
