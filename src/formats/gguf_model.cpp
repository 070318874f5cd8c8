#include "formats/gguf_model.h"

#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/ranges.h>

#include "core/error.h"
#include "core/mapped_file.h"

namespace ariadne {

namespace {

constexpr std::string_view kRopeFreqsTensor = "rope_freqs.weight";
constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();

// Reads llama.cpp's keys for one architecture prefix, naming the key in every error.
class KeyReader {
 public:
  KeyReader(const GgufFile& f, std::string prefix) : f_(f), prefix_(std::move(prefix)) {}

  std::string key(std::string_view suffix) const { return fmt::format("{}.{}", prefix_, suffix); }

  // A dimension-like integer in [min, kMaxDim]; fallback < 0 means the key is required.
  int64_t dim(std::string_view suffix, int64_t min, int64_t fallback = -1) const {
    const std::string k = key(suffix);
    if (!f_.has(k) && fallback >= 0) return fallback;
    const int64_t v = f_.get_int(k);
    if (v < min || v > kMaxDim)
      fail("{}: metadata key '{}': value {} out of range (expected {}..{})", f_.path(), k, v, min, kMaxDim);
    return v;
  }

  // A finite positive float; fallback < 0 means the key is required.
  double positive_float(std::string_view suffix, double fallback = -1.0) const {
    const std::string k = key(suffix);
    if (!f_.has(k) && fallback >= 0) return fallback;
    const double v = f_.get_float(k);
    // Bounded by the float range too, since the config stores floats.
    if (!std::isfinite(v) || v <= 0.0 || v > std::numeric_limits<float>::max())
      fail("{}: metadata key '{}': value {} is not a finite positive number", f_.path(), k, v);
    return v;
  }

 private:
  const GgufFile& f_;
  std::string prefix_;
};

int32_t token_id(const GgufFile& f, std::string_view key, int64_t n_vocab) {
  if (!f.has(key)) return -1;
  const int64_t id = f.get_int(key);
  if (id < 0 || id >= n_vocab)
    fail("{}: metadata key '{}': token id {} outside the vocabulary (size {})", f.path(), key, id, n_vocab);
  return static_cast<int32_t>(id);
}

std::vector<float> read_freq_factors(const GgufFile& f, const TensorView& t, int64_t head_dim) {
  if (t.type != DType::F32 || t.shape != std::vector<int64_t>{head_dim / 2})
    fail("{}: tensor '{}': expected f32 [{}] (head_dim / 2), found {} [{}]", f.path(), t.name, head_dim / 2,
         dtype_name(t.type), fmt::join(t.shape, ", "));
  std::vector<float> v(static_cast<size_t>(head_dim / 2));
  std::memcpy(v.data(), t.data, v.size() * sizeof(float));
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]) || v[i] <= 0.0f)
      fail("{}: tensor '{}': element {} is {}, expected a finite positive divisor", f.path(), t.name, i,
           v[i]);
  return v;
}

uint32_t to_u32(int64_t v, const std::string& name, std::string_view field) {
  if (v < 0 || v > std::numeric_limits<uint32_t>::max())
    fail("{}: {} = {} does not fit a GGUF u32", name, field, v);
  return static_cast<uint32_t>(v);
}

}  // namespace

std::unique_ptr<ModelSource> load_gguf_model(const std::string& path, std::shared_ptr<GgufFile>* file_out) {
  auto file = std::make_shared<GgufFile>(path);
  if (file_out != nullptr) *file_out = file;
  return load_gguf_model(std::move(file));
}

std::unique_ptr<ModelSource> load_gguf_model(std::shared_ptr<GgufFile> file) {
  ARIADNE_CHECK(file != nullptr, "load_gguf_model: null file");
  const GgufFile& f = *file;
  auto src = std::make_unique<ModelSource>();
  src->path = f.path();
  src->format = "gguf";
  ModelConfig& c = src->config;

  const std::string arch = f.get_string("general.architecture");
  if (!arch_from_name(arch, &c.arch))
    fail("{}: unsupported architecture '{}' (supported: llama, mistral, qwen2, qwen3)", f.path(), arch);
  const KeyReader keys(f, arch);

  c.n_ctx_train = keys.dim("context_length", 1);
  c.n_embd = keys.dim("embedding_length", 1);
  c.n_layer = keys.dim("block_count", 1);
  c.n_ff = keys.dim("feed_forward_length", 1);
  c.n_head = keys.dim("attention.head_count", 1);
  c.n_head_kv = keys.dim("attention.head_count_kv", 1, c.n_head);
  if (c.n_head % c.n_head_kv != 0)
    fail("{}: metadata key '{}' ({}) is not a multiple of '{}' ({})", f.path(),
         keys.key("attention.head_count"), c.n_head, keys.key("attention.head_count_kv"), c.n_head_kv);
  if (!f.has(keys.key("attention.key_length")) && c.n_embd % c.n_head != 0)
    fail("{}: metadata key '{}' ({}) is not a multiple of '{}' ({}), and '{}' is absent", f.path(),
         keys.key("embedding_length"), c.n_embd, keys.key("attention.head_count"), c.n_head,
         keys.key("attention.key_length"));
  c.head_dim = keys.dim("attention.key_length", 1, c.n_embd / c.n_head);
  // Rotary pairs need an even head dimension.
  if (c.head_dim % 2 != 0)
    fail("{}: head dimension {} (from '{}') is odd", f.path(), c.head_dim, keys.key("attention.key_length"));
  if (f.has(keys.key("attention.value_length")) && keys.dim("attention.value_length", 1) != c.head_dim)
    fail("{}: metadata key '{}' ({}) differs from the key length {} (not supported)", f.path(),
         keys.key("attention.value_length"), f.get_int(keys.key("attention.value_length")), c.head_dim);
  // Partial rotary embeddings are not part of any supported architecture.
  if (f.has(keys.key("rope.dimension_count")) && keys.dim("rope.dimension_count", 1) != c.head_dim)
    fail("{}: metadata key '{}' ({}) differs from the head dimension {} (partial RoPE is not supported)",
         f.path(), keys.key("rope.dimension_count"), f.get_int(keys.key("rope.dimension_count")), c.head_dim);

  const double eps = keys.positive_float("attention.layer_norm_rms_epsilon");
  if (eps >= 1.0)
    fail("{}: metadata key '{}': {} is not a plausible RMS-norm epsilon (expected < 1)", f.path(),
         keys.key("attention.layer_norm_rms_epsilon"), eps);
  c.rms_eps = static_cast<float>(eps);

  // llama.cpp's converter permutes llama/mistral Q/K rows into interleaved pairs; qwen keeps HF's layout.
  c.rope.style =
      (c.arch == Arch::Llama || c.arch == Arch::Mistral) ? RopeStyle::Interleaved : RopeStyle::NeoX;
  c.rope.theta = static_cast<float>(keys.positive_float("rope.freq_base", 10000.0));
  const std::string scaling_key = keys.key("rope.scaling.type");
  const std::string scaling = f.get_string(scaling_key, "none");
  if (scaling == "linear") {
    c.rope.scaling = RopeScaling::Linear;
    c.rope.factor = static_cast<float>(keys.positive_float("rope.scaling.factor"));
  } else if (scaling == "none") {
    // Files from 2023 llama.cpp spell linear scaling as a single key.
    const double old_factor = keys.positive_float("rope.scale_linear", 1.0);
    if (!f.has(scaling_key) && old_factor != 1.0) {
      c.rope.scaling = RopeScaling::Linear;
      c.rope.factor = static_cast<float>(old_factor);
    }
  } else {
    fail("{}: metadata key '{}': unsupported RoPE scaling type '{}' (supported: none, linear)", f.path(),
         scaling_key, scaling);
  }

  const TensorView* embd = f.find_tensor("token_embd.weight");
  if (f.has(keys.key("vocab_size"))) {
    c.n_vocab = keys.dim("vocab_size", 1);
  } else if (embd != nullptr && embd->shape.size() == 2 && embd->shape[0] > 0 && embd->shape[0] <= kMaxDim) {
    c.n_vocab = embd->shape[0];
  } else {
    fail("{}: cannot tell the vocabulary size: no metadata key '{}' and no 2-D tensor 'token_embd.weight'",
         f.path(), keys.key("vocab_size"));
  }
  c.bos_id = token_id(f, "tokenizer.ggml.bos_token_id", c.n_vocab);
  c.eos_id = token_id(f, "tokenizer.ggml.eos_token_id", c.n_vocab);

  for (const TensorView& t : f.tensors()) {
    if (t.name == kRopeFreqsTensor)
      c.rope.freq_factors = read_freq_factors(f, t, c.head_dim);
    else
      src->tensors.emplace(t.name, t);
  }
  c.tied_output = src->find("output.weight") == nullptr;

  // The tensors point into the file's bytes; keeping the GgufFile keeps its mapping alive.
  src->storage.push_back(std::shared_ptr<const void>(file, file.get()));
  // Q4_0 matrices are repacked for the CPU kernels; the file pages of the originals are dropped from
  // memory as they are packed (still readable: they fault back in from the file).
  const std::shared_ptr<MappedFile> mapping = file->mapping();
  pack_weights(*src, [&](const uint8_t* p, size_t n) {
    if (mapping != nullptr) mapping->release(p, n);
  });
  return src;
}

void write_gguf_metadata(GgufWriter& w, const ModelConfig& c, const std::string& name) {
  // llama.cpp has no "mistral" architecture of its own for these models; its converter writes "llama".
  const std::string arch(c.arch == Arch::Mistral ? "llama" : arch_name(c.arch));
  auto key = [&](std::string_view suffix) { return fmt::format("{}.{}", arch, suffix); };
  auto u32 = [&](std::string_view suffix, int64_t v) {
    w.set_u32(key(suffix), to_u32(v, name, key(suffix)));
  };

  w.set_string("general.architecture", arch);
  w.set_string("general.name", name);
  w.set_u32("general.quantization_version", 2);
  u32("vocab_size", c.n_vocab);
  u32("context_length", c.n_ctx_train);
  u32("embedding_length", c.n_embd);
  u32("block_count", c.n_layer);
  u32("feed_forward_length", c.n_ff);
  u32("rope.dimension_count", c.head_dim);
  u32("attention.head_count", c.n_head);
  u32("attention.head_count_kv", c.n_head_kv);
  u32("attention.key_length", c.head_dim);
  u32("attention.value_length", c.head_dim);
  w.set_f32(key("rope.freq_base"), c.rope.theta);
  w.set_f32(key("attention.layer_norm_rms_epsilon"), c.rms_eps);
  if (c.rope.scaling == RopeScaling::Linear) {
    w.set_string(key("rope.scaling.type"), "linear");
    w.set_f32(key("rope.scaling.factor"), c.rope.factor);
  }
}

}  // namespace ariadne
