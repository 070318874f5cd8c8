// Format detection and the checks every loaded model goes through before a forward pass.
#include <sys/stat.h>

#include <cstring>

#include "core/error.h"
#include "core/mapped_file.h"
#include "formats/gguf_model.h"
#include "formats/hf_model.h"
#include "formats/llama2c.h"
#include "formats/model_source.h"

namespace ariadne {

namespace {

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string expected_shape(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

std::string shape_string(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

void expect_tensor(const ModelSource& s, const std::string& name, std::initializer_list<int64_t> dims,
                   bool vector_f32_like) {
  const TensorView& t = s.get(name);
  if (t.shape != std::vector<int64_t>(dims))
    fail("{}: tensor '{}' has shape {}, expected {}", s.path, name, shape_string(t.shape),
         expected_shape(dims));
  if (vector_f32_like && t.type != DType::F32 && t.type != DType::F16 && t.type != DType::BF16)
    fail("{}: tensor '{}' has type {}, expected f32, f16 or bf16", s.path, name, dtype_name(t.type));
  if (t.type == DType::I32)
    fail("{}: tensor '{}' has type i32, expected a floating-point type", s.path, name);
}

}  // namespace

std::unique_ptr<ModelSource> open_model(const std::string& path) {
  if (is_directory(path) || ends_with(path, ".json") || ends_with(path, ".safetensors"))
    return load_hf_model(path);
  const MappedFile file(path);
  if (file.size() >= 4 && std::memcmp(file.data(), "GGUF", 4) == 0) return load_gguf_model(path);
  if (looks_like_llama2c(file.data(), file.size())) return load_llama2c_model(path);
  fail(
      "{}: unknown model format (expected a GGUF file, a llama2.c checkpoint, or a Hugging Face folder "
      "with config.json and *.safetensors)",
      path);
}

void validate_model(const ModelSource& s) {
  const ModelConfig& c = s.config;
  auto positive = [&](int64_t v, const char* field) {
    if (v <= 0) fail("{}: {} must be positive, got {}", s.path, field, v);
  };
  positive(c.n_vocab, "vocabulary size");
  positive(c.n_embd, "embedding size");
  positive(c.n_layer, "layer count");
  positive(c.n_head, "head count");
  positive(c.n_head_kv, "kv head count");
  positive(c.head_dim, "head dimension");
  positive(c.n_ff, "feed-forward size");
  if (c.n_head % c.n_head_kv != 0)
    fail("{}: head count {} is not a multiple of the kv head count {}", s.path, c.n_head, c.n_head_kv);
  if (c.head_dim % 2 != 0) fail("{}: head dimension {} must be even for RoPE", s.path, c.head_dim);
  if (!(c.rms_eps > 0.0f)) fail("{}: rms norm epsilon must be positive", s.path);
  if (!(c.rope.theta > 0.0f)) fail("{}: rope theta must be positive", s.path);
  if (c.rope.scaling != RopeScaling::None && !(c.rope.factor > 0.0f))
    fail("{}: rope scaling factor must be positive", s.path);
  if (c.rope.scaling == RopeScaling::Llama3 && !(c.rope.high_freq_factor > c.rope.low_freq_factor))
    fail("{}: llama3 rope scaling needs high_freq_factor > low_freq_factor", s.path);
  if (!c.rope.freq_factors.empty() && static_cast<int64_t>(c.rope.freq_factors.size()) != c.head_dim / 2)
    fail("{}: rope frequency factors have {} entries, expected head_dim/2 = {}", s.path,
         c.rope.freq_factors.size(), c.head_dim / 2);

  const int64_t q_dim = c.n_head * c.head_dim;
  const int64_t kv_dim = c.n_head_kv * c.head_dim;
  expect_tensor(s, "token_embd.weight", {c.n_vocab, c.n_embd}, false);
  expect_tensor(s, "output_norm.weight", {c.n_embd}, true);
  if (!c.tied_output) expect_tensor(s, "output.weight", {c.n_vocab, c.n_embd}, false);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    expect_tensor(s, p + "attn_norm.weight", {c.n_embd}, true);
    expect_tensor(s, p + "attn_q.weight", {q_dim, c.n_embd}, false);
    expect_tensor(s, p + "attn_k.weight", {kv_dim, c.n_embd}, false);
    expect_tensor(s, p + "attn_v.weight", {kv_dim, c.n_embd}, false);
    expect_tensor(s, p + "attn_output.weight", {c.n_embd, q_dim}, false);
    expect_tensor(s, p + "ffn_norm.weight", {c.n_embd}, true);
    expect_tensor(s, p + "ffn_gate.weight", {c.n_ff, c.n_embd}, false);
    expect_tensor(s, p + "ffn_up.weight", {c.n_ff, c.n_embd}, false);
    expect_tensor(s, p + "ffn_down.weight", {c.n_embd, c.n_ff}, false);
    const bool has_bias = s.find(p + "attn_q.bias") != nullptr;
    if (c.arch == Arch::Qwen2 || has_bias) {
      expect_tensor(s, p + "attn_q.bias", {q_dim}, true);
      expect_tensor(s, p + "attn_k.bias", {kv_dim}, true);
      expect_tensor(s, p + "attn_v.bias", {kv_dim}, true);
    }
    if (c.arch == Arch::Qwen3) {
      expect_tensor(s, p + "attn_q_norm.weight", {c.head_dim}, true);
      expect_tensor(s, p + "attn_k_norm.weight", {c.head_dim}, true);
    }
  }
}

}  // namespace ariadne
