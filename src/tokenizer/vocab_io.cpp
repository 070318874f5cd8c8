#include "tokenizer/vocab_io.h"

#include "core/error.h"

namespace ariadne {

bool gguf_has_vocab(const GgufFile& f) {
  const std::string model = f.get_string("tokenizer.ggml.model", "none");
  return model != "none" && model != "no_vocab";
}

Vocab vocab_from_gguf(const GgufFile& f) {
  Vocab v;
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model == "llama") {
    v.model = TokenizerModel::Spm;
  } else if (model == "gpt2") {
    v.model = TokenizerModel::Bpe;
  } else if (model == "bert") {
    v.model = TokenizerModel::WordPiece;
  } else {
    fail("{}: metadata key 'tokenizer.ggml.model': unsupported tokenizer '{}' (supported: llama, gpt2, bert)",
         f.path(), model);
  }
  v.pre = f.get_string("tokenizer.ggml.pre", "default");
  v.tokens = f.get_string_array("tokenizer.ggml.tokens");
  const size_t n = v.tokens.size();
  if (n == 0) fail("{}: metadata key 'tokenizer.ggml.tokens': the vocabulary is empty", f.path());
  if (f.has("tokenizer.ggml.scores")) {
    v.scores = f.get_f32_array("tokenizer.ggml.scores");
    if (v.scores.size() != n)
      fail("{}: metadata key 'tokenizer.ggml.scores': {} entries, expected {} (one per token)", f.path(),
           v.scores.size(), n);
  }
  if (f.has("tokenizer.ggml.token_type")) {
    const std::vector<int32_t> types = f.get_i32_array("tokenizer.ggml.token_type");
    if (types.size() != n)
      fail("{}: metadata key 'tokenizer.ggml.token_type': {} entries, expected {} (one per token)", f.path(),
           types.size(), n);
    v.types.reserve(n);
    for (int32_t t : types) {
      if (t < 0 || t > 6)
        fail("{}: metadata key 'tokenizer.ggml.token_type': unknown token type {}", f.path(), t);
      v.types.push_back(static_cast<TokenType>(t));
    }
  } else {
    v.types.assign(n, TokenType::Normal);
  }
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_string_array("tokenizer.ggml.merges");
  if (v.model == TokenizerModel::Bpe && v.merges.empty())
    fail("{}: metadata key 'tokenizer.ggml.merges': a gpt2 (BPE) tokenizer needs its merges", f.path());

  // Defaults as llama.cpp sets them per tokenizer model, then the file's keys.
  if (v.model == TokenizerModel::Spm) {
    v.bos_id = 1, v.eos_id = 2, v.unk_id = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
  } else if (v.model == TokenizerModel::Bpe) {
    v.bos_id = 11, v.eos_id = 11;
    v.add_space_prefix = false;
  } else {
    v.bos_id = 101, v.eos_id = -1, v.unk_id = 100, v.sep_id = 102, v.pad_id = 0, v.mask_id = 103;
    v.add_bos = true;
    v.add_eos = true;
    v.add_space_prefix = false;
  }
  auto id_key = [&](const char* key, int32_t& out) {
    if (!f.has(key)) return;
    const int64_t id = f.get_int(key);
    if (id < -1 || id >= static_cast<int64_t>(n))
      fail("{}: metadata key '{}': token id {} is outside the vocabulary [0, {})", f.path(), key, id, n);
    out = static_cast<int32_t>(id);
  };
  id_key("tokenizer.ggml.bos_token_id", v.bos_id);
  id_key("tokenizer.ggml.eos_token_id", v.eos_id);
  id_key("tokenizer.ggml.eot_token_id", v.eot_id);
  id_key("tokenizer.ggml.unknown_token_id", v.unk_id);
  id_key("tokenizer.ggml.padding_token_id", v.pad_id);
  id_key("tokenizer.ggml.seperator_token_id", v.sep_id);  // sic: llama.cpp's key spelling
  id_key("tokenizer.ggml.cls_token_id", v.cls_id);
  id_key("tokenizer.ggml.mask_token_id", v.mask_id);
  v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token", v.add_eos);
  v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  v.clean_spaces = f.get_bool("tokenizer.ggml.clean_up_tokenization_spaces", v.clean_spaces);
  v.normalizer_lowercase = f.get_bool("tokenizer.ggml.normalizer.lowercase", true);
  v.normalizer_strip_accents = f.get_bool("tokenizer.ggml.normalizer.strip_accents", v.normalizer_lowercase);
  v.chat_template = f.get_string("tokenizer.chat_template", "");
  // llama.cpp: Llama 3's pre-tokenizer emits a pre-token whole when it is itself a vocabulary entry.
  v.ignore_merges = v.pre == "llama-bpe" || v.pre == "llama3";
  v.index();
  // End-of-turn by well-known text when the file does not say.
  if (v.eot_id < 0) {
    for (const char* t : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>"}) {
      const int32_t id = v.find(t);
      if (id >= 0 && v.types[static_cast<size_t>(id)] == TokenType::Control) {
        v.eot_id = id;
        break;
      }
    }
  }
  return v;
}

void write_vocab_gguf(GgufWriter& w, const Vocab& v) {
  w.set_string("tokenizer.ggml.model", v.model == TokenizerModel::Spm   ? "llama"
                                       : v.model == TokenizerModel::Bpe ? "gpt2"
                                                                        : "bert");
  w.set_string("tokenizer.ggml.pre", v.pre);
  w.set_string_array("tokenizer.ggml.tokens", v.tokens);
  if (!v.scores.empty()) w.set_f32_array("tokenizer.ggml.scores", v.scores);
  std::vector<int32_t> types;
  types.reserve(v.types.size());
  for (TokenType t : v.types) types.push_back(static_cast<int32_t>(t));
  w.set_i32_array("tokenizer.ggml.token_type", types);
  if (!v.merges.empty()) w.set_string_array("tokenizer.ggml.merges", v.merges);
  auto id_key = [&](const char* key, int32_t id) {
    if (id >= 0) w.set_u32(key, static_cast<uint32_t>(id));
  };
  id_key("tokenizer.ggml.bos_token_id", v.bos_id);
  id_key("tokenizer.ggml.eos_token_id", v.eos_id);
  id_key("tokenizer.ggml.eot_token_id", v.eot_id);
  id_key("tokenizer.ggml.unknown_token_id", v.unk_id);
  id_key("tokenizer.ggml.padding_token_id", v.pad_id);
  id_key("tokenizer.ggml.seperator_token_id", v.sep_id);
  id_key("tokenizer.ggml.cls_token_id", v.cls_id);
  id_key("tokenizer.ggml.mask_token_id", v.mask_id);
  w.set_bool("tokenizer.ggml.add_bos_token", v.add_bos);
  w.set_bool("tokenizer.ggml.add_eos_token", v.add_eos);
  if (v.model == TokenizerModel::Spm) w.set_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
  if (v.model == TokenizerModel::WordPiece) {
    w.set_bool("tokenizer.ggml.normalizer.lowercase", v.normalizer_lowercase);
    w.set_bool("tokenizer.ggml.normalizer.strip_accents", v.normalizer_strip_accents);
  }
  if (!v.chat_template.empty()) w.set_string("tokenizer.chat_template", v.chat_template);
}

}  // namespace ariadne
