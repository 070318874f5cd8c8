#include "models/model.h"

#include <cmath>

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "models/blocks.h"
#include "models/families.h"
#include "ops/ops.h"

namespace ariadne {

namespace {

std::vector<float> optional_f32(const ModelSource& s, const std::string& name) {
  const TensorView* t = s.find(name);
  return t == nullptr ? std::vector<float>{} : ops::to_f32(*t);
}

}  // namespace

Model::Model(std::shared_ptr<const ModelSource> source) : source_(std::move(source)) {
  const ModelSource& s = *source_;
  const ModelConfig& c = s.config;
  token_embd_ = &s.get("token_embd.weight");
  output_ = c.tied_output ? token_embd_ : &s.get("output.weight");
  output_norm_ = ops::to_f32(s.get("output_norm.weight"));
  layers_.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& w = layers_[static_cast<size_t>(il)];
    w.attn_norm = ops::to_f32(s.get(p + "attn_norm.weight"));
    w.wq = &s.get(p + "attn_q.weight");
    w.wk = &s.get(p + "attn_k.weight");
    w.wv = &s.get(p + "attn_v.weight");
    w.wo = &s.get(p + "attn_output.weight");
    w.bq = optional_f32(s, p + "attn_q.bias");
    w.bk = optional_f32(s, p + "attn_k.bias");
    w.bv = optional_f32(s, p + "attn_v.bias");
    w.q_norm = optional_f32(s, p + "attn_q_norm.weight");
    w.k_norm = optional_f32(s, p + "attn_k_norm.weight");
    w.ffn_norm = ops::to_f32(s.get(p + "ffn_norm.weight"));
    w.ffn_gate = &s.get(p + "ffn_gate.weight");
    w.ffn_up = &s.get(p + "ffn_up.weight");
    w.ffn_down = &s.get(p + "ffn_down.weight");
  }
  rope_ = make_rope_table(c);
}

void Model::forward(const ops::Context& ctx, const Batch& batch, ops::KvMemory& kv, float* logits) const {
  const ModelConfig& c = config();
  blocks::Activations a(c, batch.n_tokens);
  ops::embed(ctx, *token_embd_, batch.ids, batch.n_tokens, a.x.data());
  for (int64_t il = 0; il < c.n_layer; ++il) layer(ctx, il, batch, kv, a);
  blocks::logits(ctx, c, output_norm_, *output_, batch, a, logits);
}

void Model::forward_layer_major(const ops::Context& ctx, const Batch& batch, int64_t n_batch,
                                ops::KvMemory& kv, float* logits,
                                const std::function<void(int64_t, int64_t)>& after_chunk,
                                const std::function<void(int64_t)>& after_layer) const {
  const ModelConfig& c = config();
  const int64_t n = batch.n_tokens;
  ARIADNE_CHECK(n > 0 && n_batch > 0, "forward_layer_major: empty batch");
  const int64_t chunk = std::min(n_batch, n);
  const auto row = static_cast<size_t>(c.n_embd);
  // The residual stream of the whole batch; each chunk is copied into the chunk-sized buffers and back.
  blocks::Activations whole(c, 0);
  whole.x.resize(static_cast<size_t>(n) * row);  // [n][n_embd]
  ops::embed(ctx, *token_embd_, batch.ids, n, whole.x.data());
  blocks::Activations a(c, chunk);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t len = std::min(chunk, n - start);
      Batch part{batch.ids + start, batch.positions + start, len, batch.all_logits};
      float* x = whole.x.data() + static_cast<size_t>(start) * row;
      std::memcpy(a.x.data(), x, static_cast<size_t>(len) * row * sizeof(float));
      layer(ctx, il, part, kv, a);
      std::memcpy(x, a.x.data(), static_cast<size_t>(len) * row * sizeof(float));
      if (after_chunk) after_chunk(il, start + len);
    }
    if (after_layer) after_layer(il);
  }
  blocks::logits(ctx, c, output_norm_, *output_, batch, whole, logits);
}

std::unique_ptr<Model> Model::create(std::shared_ptr<const ModelSource> source) {
  validate_model(*source);
  switch (source->config.arch) {
    case Arch::Llama:
    case Arch::Mistral:
      return make_llama_model(std::move(source));
    case Arch::Qwen2:
      return make_qwen2_model(std::move(source));
    case Arch::Qwen3:
      return make_qwen3_model(std::move(source));
  }
  fail("{}: unsupported architecture", source->path);
}

ops::RopeTable make_rope_table(const ModelConfig& c) {
  const RopeConfig& r = c.rope;
  const int64_t half = c.head_dim / 2;
  const std::vector<float> divisors = rope_freq_divisors(r, c.head_dim);
  ops::RopeTable table;
  table.neox = r.style == RopeStyle::NeoX;
  table.inv_freq.resize(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    // theta^(-2i/d) as HF's rope init computes it (there in f32; here in double, rounded once).
    const double inv = 1.0 / std::pow(static_cast<double>(r.theta), static_cast<double>(2 * i) / c.head_dim);
    table.inv_freq[static_cast<size_t>(i)] = static_cast<float>(inv / divisors[static_cast<size_t>(i)]);
  }
  table.position_scale = r.scaling == RopeScaling::Linear ? 1.0f / r.factor : 1.0f;
  return table;
}

}  // namespace ariadne
