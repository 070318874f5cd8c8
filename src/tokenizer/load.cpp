#include "tokenizer/load.h"

#include <filesystem>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf.h"
#include "formats/llama2c.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/vocab_io.h"

namespace ariadne {

namespace fs = std::filesystem;

namespace {

bool has_magic(const std::string& path, const char* magic, size_t n) {
  const MappedFile f(path);
  return f.size() >= n && std::equal(magic, magic + n, reinterpret_cast<const char*>(f.data()));
}

Vocab vocab_from_gguf_path(const std::string& path) {
  const GgufFile file(path);
  if (!gguf_has_vocab(file)) fail("{}: the GGUF file carries no tokenizer (tokenizer.ggml.model)", path);
  return vocab_from_gguf(file);
}

}  // namespace

Vocab load_vocab_file(const std::string& path, const std::string& pre) {
  const fs::path p(path);
  if (fs::is_directory(p)) return vocab_from_hf_folder(path);
  if (!fs::exists(p)) fail("{}: no such tokenizer file", path);
  const std::string name = p.filename().string();
  const std::string dir = p.parent_path().string().empty() ? "." : p.parent_path().string();
  if (name.ends_with(".json") && name != "vocab.json" && name != "encoder.json")
    return vocab_from_tokenizer_json(path);
  if (name == "vocab.json")
    return vocab_from_bpe_files(path, dir + "/merges.txt", pre.empty() ? "default" : pre);
  if (name == "encoder.json")
    return vocab_from_bpe_files(path, dir + "/vocab.bpe", pre.empty() ? "gpt2" : pre);
  if (name.ends_with(".model")) return vocab_from_sentencepiece_model(path);
  if (has_magic(path, "GGUF", 4)) return vocab_from_gguf_path(path);
  // Anything else is taken for a llama2.c tokenizer.bin (its reader validates every length).
  return vocab_from_llama2c(path, 0);
}

Vocab load_model_vocab(const std::string& model_path, const std::string& tokenizer_path) {
  if (!tokenizer_path.empty()) return load_vocab_file(tokenizer_path);
  const fs::path p(model_path);
  if (fs::is_directory(p)) return vocab_from_hf_folder(model_path);
  if (model_path.ends_with("config.json") || model_path.ends_with(".safetensors"))
    return vocab_from_hf_folder(p.parent_path().string().empty() ? "." : p.parent_path().string());
  if (has_magic(model_path, "GGUF", 4)) return vocab_from_gguf_path(model_path);
  const MappedFile f(model_path);
  if (looks_like_llama2c(f.data(), f.size())) {
    const fs::path beside = p.parent_path() / "tokenizer.bin";
    if (!fs::exists(beside))
      fail("{}: a llama2.c checkpoint carries no tokenizer; name its tokenizer.bin with --tokenizer",
           model_path);
    return vocab_from_llama2c(beside.string(), 0);
  }
  fail("{}: cannot tell which tokenizer belongs to this file (name one with --tokenizer)", model_path);
}

}  // namespace ariadne
