#include "formats/synth.h"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "core/error.h"
#include "formats/convert.h"
#include "formats/gguf.h"
#include "formats/gguf_model.h"
#include "kernels/cpu/quants.h"

namespace ariadne {

namespace {

ModelConfig make_config(Arch arch, int64_t vocab, int64_t embd, int64_t layers, int64_t heads,
                        int64_t kv_heads, int64_t head_dim, int64_t ff, int64_t ctx, float eps, float theta,
                        bool tied) {
  ModelConfig c;
  c.arch = arch;
  c.n_vocab = vocab;
  c.n_embd = embd;
  c.n_layer = layers;
  c.n_head = heads;
  c.n_head_kv = kv_heads;
  c.head_dim = head_dim;
  c.n_ff = ff;
  c.n_ctx_train = ctx;
  c.rms_eps = eps;
  c.rope.theta = theta;
  c.rope.style = (arch == Arch::Llama || arch == Arch::Mistral) ? RopeStyle::Interleaved : RopeStyle::NeoX;
  c.tied_output = tied;
  c.bos_id = 1;
  c.eos_id = 2;
  return c;
}

ModelConfig with_llama3_rope(ModelConfig c, float factor) {
  c.rope.scaling = RopeScaling::Llama3;
  c.rope.factor = factor;
  c.rope.low_freq_factor = 1.0f;
  c.rope.high_freq_factor = 4.0f;
  c.rope.original_context = 8192;
  return c;
}

std::vector<SynthShape> build_shapes() {
  std::vector<SynthShape> s;
  // Values from each checkpoint's config.json.
  s.push_back({"llama-3.2-1b", "meta-llama/Llama-3.2-1B",
               with_llama3_rope(make_config(Arch::Llama, 128256, 2048, 16, 32, 8, 64, 8192, 131072, 1e-5f,
                                            500000.0f, true),
                                32.0f),
               false});
  s.push_back({"llama-3.2-3b", "meta-llama/Llama-3.2-3B",
               with_llama3_rope(make_config(Arch::Llama, 128256, 3072, 28, 24, 8, 128, 8192, 131072, 1e-5f,
                                            500000.0f, true),
                                32.0f),
               false});
  s.push_back({"llama-3.1-8b", "meta-llama/Llama-3.1-8B",
               with_llama3_rope(make_config(Arch::Llama, 128256, 4096, 32, 32, 8, 128, 14336, 131072, 1e-5f,
                                            500000.0f, false),
                                8.0f),
               false});
  s.push_back({"llama-2-7b", "meta-llama/Llama-2-7b-hf",
               make_config(Arch::Llama, 32000, 4096, 32, 32, 32, 128, 11008, 4096, 1e-5f, 10000.0f, false),
               false});
  s.push_back(
      {"mistral-7b", "mistralai/Mistral-7B-v0.3",
       make_config(Arch::Mistral, 32768, 4096, 32, 32, 8, 128, 14336, 32768, 1e-5f, 1000000.0f, false),
       false});
  s.push_back({"qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B",
               make_config(Arch::Qwen2, 151936, 896, 24, 14, 2, 64, 4864, 32768, 1e-6f, 1000000.0f, true),
               true});
  s.push_back(
      {"qwen2.5-7b", "Qwen/Qwen2.5-7B",
       make_config(Arch::Qwen2, 152064, 3584, 28, 28, 4, 128, 18944, 131072, 1e-6f, 1000000.0f, false),
       true});
  s.push_back({"qwen3-0.6b", "Qwen/Qwen3-0.6B",
               make_config(Arch::Qwen3, 151936, 1024, 28, 16, 8, 128, 3072, 40960, 1e-6f, 1000000.0f, true),
               false});
  s.push_back({"qwen3-8b", "Qwen/Qwen3-8B",
               make_config(Arch::Qwen3, 151936, 4096, 36, 32, 8, 128, 12288, 40960, 1e-6f, 1000000.0f, false),
               false});
  // Not a real checkpoint: a tiny llama for tests and the self-contained demo.
  s.push_back({"tiny", "(none: 4-layer test model)",
               make_config(Arch::Llama, 512, 256, 4, 4, 2, 64, 768, 4096, 1e-5f, 10000.0f, false), false});
  return s;
}

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  enum Kind { kWeight, kOnes, kBias } kind;
};

std::vector<TensorSpec> tensor_specs(const SynthShape& s) {
  const ModelConfig& c = s.config;
  const int64_t q = c.n_head * c.head_dim;
  const int64_t kv = c.n_head_kv * c.head_dim;
  std::vector<TensorSpec> t;
  t.push_back({"token_embd.weight", {c.n_vocab, c.n_embd}, TensorSpec::kWeight});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    t.push_back({p + "attn_norm.weight", {c.n_embd}, TensorSpec::kOnes});
    t.push_back({p + "attn_q.weight", {q, c.n_embd}, TensorSpec::kWeight});
    t.push_back({p + "attn_k.weight", {kv, c.n_embd}, TensorSpec::kWeight});
    t.push_back({p + "attn_v.weight", {kv, c.n_embd}, TensorSpec::kWeight});
    if (s.qkv_bias) {
      t.push_back({p + "attn_q.bias", {q}, TensorSpec::kBias});
      t.push_back({p + "attn_k.bias", {kv}, TensorSpec::kBias});
      t.push_back({p + "attn_v.bias", {kv}, TensorSpec::kBias});
    }
    if (c.arch == Arch::Qwen3) {
      t.push_back({p + "attn_q_norm.weight", {c.head_dim}, TensorSpec::kOnes});
      t.push_back({p + "attn_k_norm.weight", {c.head_dim}, TensorSpec::kOnes});
    }
    t.push_back({p + "attn_output.weight", {c.n_embd, q}, TensorSpec::kWeight});
    t.push_back({p + "ffn_norm.weight", {c.n_embd}, TensorSpec::kOnes});
    t.push_back({p + "ffn_gate.weight", {c.n_ff, c.n_embd}, TensorSpec::kWeight});
    t.push_back({p + "ffn_up.weight", {c.n_ff, c.n_embd}, TensorSpec::kWeight});
    t.push_back({p + "ffn_down.weight", {c.n_embd, c.n_ff}, TensorSpec::kWeight});
  }
  t.push_back({"output_norm.weight", {c.n_embd}, TensorSpec::kOnes});
  if (!c.tied_output) t.push_back({"output.weight", {c.n_vocab, c.n_embd}, TensorSpec::kWeight});
  return t;
}

// splitmix64: a tiny, well-mixed generator; one stream per (seed, tensor, row) keeps output independent
// of how rows are split across threads.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

void fill_normal(uint64_t stream, float stddev, float* out, int64_t n) {
  uint64_t state = stream;
  for (int64_t i = 0; i < n; i += 2) {
    // Box-Muller on two uniforms in (0, 1].
    const double u1 = (static_cast<double>(splitmix64(state) >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
    out[i] = static_cast<float>(r * std::cos(2.0 * 3.14159265358979323846 * u2));
    if (i + 1 < n) out[i + 1] = static_cast<float>(r * std::sin(2.0 * 3.14159265358979323846 * u2));
  }
}

}  // namespace

const std::vector<SynthShape>& synth_shapes() {
  static const std::vector<SynthShape> shapes = build_shapes();
  return shapes;
}

const SynthShape& find_synth_shape(const std::string& name) {
  std::string lower = name;
  for (auto& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  std::string known;
  for (const SynthShape& s : synth_shapes()) {
    if (s.name == lower) return s;
    known += (known.empty() ? "" : ", ") + s.name;
  }
  fail("--shape: unknown shape '{}' (known: {})", name, known);
}

uint64_t synth_param_count(const SynthShape& shape) {
  uint64_t total = 0;
  for (const TensorSpec& t : tensor_specs(shape)) {
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
    total += n;
  }
  return total;
}

uint64_t synth_weight_bytes(const SynthShape& shape, DType type) {
  uint64_t total = 0;
  for (const TensorSpec& t : tensor_specs(shape)) {
    TensorView v;
    v.shape = t.shape;
    const DType out = output_type(v, type);
    total += row_bytes(out, v.cols()) * static_cast<uint64_t>(v.rows());
  }
  return total;
}

void write_synth_model(const SynthShape& shape, const std::string& out_path, const SynthOptions& options,
                       ThreadPool& pool) {
  const ModelConfig& c = shape.config;
  const std::vector<TensorSpec> specs = tensor_specs(shape);
  GgufWriter w;
  write_gguf_metadata(w, c, "synthetic " + shape.name + " (random weights, shape of " + shape.hf_name + ")");
  const bool rope_freqs = c.rope.scaling == RopeScaling::Llama3;
  if (rope_freqs) w.add_tensor("rope_freqs.weight", DType::F32, {c.head_dim / 2});
  std::vector<DType> types;
  for (const TensorSpec& t : specs) {
    TensorView v;
    v.shape = t.shape;
    types.push_back(output_type(v, options.type));
    w.add_tensor(t.name, types.back(), t.shape);
  }
  if (options.extra_metadata) {
    options.extra_metadata(w);
  } else {
    w.set_string("tokenizer.ggml.model", "none");
  }
  w.begin(out_path);
  if (rope_freqs) {
    const std::vector<float> divisors = rope_freq_divisors(c.rope, c.head_dim);
    w.write_tensor_data(divisors.data(), divisors.size() * sizeof(float));
  }
  std::vector<uint8_t> out;
  for (size_t ti = 0; ti < specs.size(); ++ti) {
    const TensorSpec& t = specs[ti];
    const int64_t cols = t.shape.back();
    const int64_t rows = t.shape.size() < 2 ? 1 : t.shape[0];
    const size_t out_row = row_bytes(types[ti], cols);
    const uint64_t tensor_seed = hash_name(t.name) ^ (options.seed * 0x9e3779b97f4a7c15ull);
    const int64_t chunk = std::max<int64_t>(1, (int64_t{16} << 20) / (cols * 4));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t n = std::min(chunk, rows - r0);
      out.assign(static_cast<size_t>(n) * out_row, 0);
      pool.parallel_for(n, [&](int64_t begin, int64_t end) {
        std::vector<float> row(static_cast<size_t>(cols));
        for (int64_t i = begin; i < end; ++i) {
          if (t.kind == TensorSpec::kOnes) {
            std::fill(row.begin(), row.end(), 1.0f);
          } else {
            uint64_t stream = tensor_seed + static_cast<uint64_t>(r0 + i) * 0xd1b54a32d192ed03ull;
            fill_normal(splitmix64(stream), 0.02f, row.data(), cols);
          }
          cpu::quantize_row(types[ti], row.data(), out.data() + static_cast<size_t>(i) * out_row, cols);
        }
      });
      w.write_tensor_data(out.data(), out.size());
    }
    if (options.progress) options.progress(ti + 1, specs.size());
  }
  w.finish();
}

}  // namespace ariadne
