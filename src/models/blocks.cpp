#include "models/blocks.h"

#include <cmath>

#include "ops/ops.h"

namespace ariadne::blocks {

namespace {
size_t sz(int64_t a, int64_t b) {
  return static_cast<size_t>(a * b);
}
}  // namespace

Activations::Activations(const ModelConfig& c, int64_t n)
    : x(sz(n, c.n_embd)),
      cur(sz(n, c.n_embd)),
      q(sz(n, c.n_head * c.head_dim)),
      k(sz(n, c.n_head_kv * c.head_dim)),
      v(sz(n, c.n_head_kv * c.head_dim)),
      attn(sz(n, c.n_head * c.head_dim)),
      gate(sz(n, c.n_ff)),
      up(sz(n, c.n_ff)),
      out(sz(n, c.n_embd)) {}

void qkv_projections(const ops::Context& ctx, const LayerWeights& w, int64_t n, Activations& a) {
  auto bias = [](const std::vector<float>& b) { return b.empty() ? nullptr : b.data(); };
  ops::linear(ctx, *w.wq, bias(w.bq), a.cur.data(), n, a.q.data());
  ops::linear(ctx, *w.wk, bias(w.bk), a.cur.data(), n, a.k.data());
  ops::linear(ctx, *w.wv, bias(w.bv), a.cur.data(), n, a.v.data());
}

void head_rms_norm(const ops::Context& ctx, const std::vector<float>& weight, float eps, int64_t n_tokens,
                   int64_t n_heads, float* x) {
  // Each head is one row of head_dim floats, so the token-row norm applies per head unchanged.
  ops::rms_norm(ctx, x, weight, eps, n_tokens * n_heads, x);
}

void attention(const ops::Context& ctx, const ModelConfig& c, const ops::RopeTable& rope,
               const LayerWeights& w, int64_t layer, const Batch& batch, ops::KvMemory& kv, Activations& a) {
  const int64_t n = batch.n_tokens;
  const int il = static_cast<int>(layer);
  ops::rope(ctx, rope, a.q.data(), n, c.n_head, c.head_dim, c.n_head * c.head_dim, batch.positions);
  ops::rope(ctx, rope, a.k.data(), n, c.n_head_kv, c.head_dim, c.n_head_kv * c.head_dim, batch.positions);
  ctx.observe("q_rope", il, a.q.data(), n, c.n_head * c.head_dim);
  ctx.observe("k_rope", il, a.k.data(), n, c.n_head_kv * c.head_dim);
  kv.store(ctx, layer, n, batch.positions, a.k.data(), a.v.data());
  ops::AttentionQuery query{};
  query.q = a.q.data();
  query.positions = batch.positions;
  query.n_tokens = n;
  query.n_heads = c.n_head;
  query.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  query.out = a.attn.data();
  kv.attend(ctx, layer, query);
  ctx.observe("attn_out", il, a.attn.data(), n, c.n_head * c.head_dim);
  ops::linear(ctx, *w.wo, nullptr, a.attn.data(), n, a.out.data());
}

void swiglu_ffn(const ops::Context& ctx, const LayerWeights& w, int64_t n, Activations& a) {
  const int64_t n_ff = w.ffn_gate->rows();
  ops::linear(ctx, *w.ffn_gate, nullptr, a.cur.data(), n, a.gate.data());
  ops::linear(ctx, *w.ffn_up, nullptr, a.cur.data(), n, a.up.data());
  ops::silu_mul(ctx, a.gate.data(), a.up.data(), n * n_ff);
  ops::linear(ctx, *w.ffn_down, nullptr, a.gate.data(), n, a.out.data());
}

void logits(const ops::Context& ctx, const ModelConfig& c, const std::vector<float>& output_norm,
            const TensorView& output, const Batch& batch, Activations& a, float* logits) {
  const int64_t n = batch.n_tokens;
  const int64_t first = batch.all_logits ? 0 : n - 1;
  const int64_t rows = n - first;
  float* x = a.x.data() + first * c.n_embd;
  ops::rms_norm(ctx, x, output_norm, c.rms_eps, rows, x);
  ctx.observe("result_norm", -1, x, rows, c.n_embd);
  ops::linear(ctx, output, nullptr, x, rows, logits);
}

}  // namespace ariadne::blocks
