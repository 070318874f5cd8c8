// A tokenizer's vocabulary and settings, wherever they came from (GGUF metadata, Hugging Face
// tokenizer.json, vocab.json + merges.txt, encoder.json + vocab.bpe, llama2.c tokenizer.bin, SentencePiece
// tokenizer.model). Field meanings follow llama.cpp's GGUF keys (tokenizer.ggml.*), so a Vocab can be
// written into a GGUF file and read back unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ariadne {

// llama.cpp's token types (tokenizer.ggml.token_type values).
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,      // special tokens: <s>, <|eot_id|>, ... matched in text only with special = true
  UserDefined = 4,  // added tokens: always matched in text
  Unused = 5,
  Byte = 6,  // <0xNN> byte-fallback tokens
};

enum class TokenizerModel {
  Spm,        // "llama": SentencePiece-style BPE over scores, byte fallback, spaces as U+2581
  Bpe,        // "gpt2": byte-level BPE over ranked merges, with a pre-tokenizer (Vocab::pre)
  WordPiece,  // "bert"
};

struct Vocab {
  TokenizerModel model = TokenizerModel::Spm;
  std::string pre = "default";      // tokenizer.ggml.pre: gpt2, llama-bpe, qwen2, deepseek-llm, ...
  std::vector<std::string> tokens;  // [n_vocab] token text as stored (Ġ-encoded bytes for Bpe)
  std::vector<float> scores;        // [n_vocab] (Spm merge priority); may be empty for Bpe
  std::vector<TokenType> types;     // [n_vocab]
  std::vector<std::string> merges;  // Bpe: "left right" in rank order

  int32_t bos_id = -1, eos_id = -1, eot_id = -1, unk_id = -1, pad_id = -1, sep_id = -1, cls_id = -1,
          mask_id = -1;
  bool add_bos = false;          // tokenizer.ggml.add_bos_token
  bool add_eos = false;          // tokenizer.ggml.add_eos_token
  bool add_space_prefix = true;  // tokenizer.ggml.add_space_prefix (Spm: prepend ▁ to the text)
  bool ignore_merges = false;  // Bpe: a pre-token that is itself a vocabulary entry is emitted whole (llama3)
  bool clean_spaces = false;   // tokenizer.ggml.clean_up_tokenization_spaces (decode)
  // WordPiece (BERT) normalisation, tokenizer.ggml.normalizer.{lowercase,strip_accents}; llama.cpp's
  // defaults: both on, strip_accents following lowercase when only that is given.
  bool normalizer_lowercase = true;
  bool normalizer_strip_accents = true;
  std::string chat_template;  // tokenizer.chat_template (Jinja), may be empty

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  // Builds the text -> id map (call after filling tokens).
  void index();
  // -1 when absent. Needs index().
  int32_t find(const std::string& token) const;

  std::unordered_map<std::string, int32_t> token_to_id;
};

}  // namespace ariadne
