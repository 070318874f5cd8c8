#include "runtime/kv_cache.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/cpu/attention.h"

namespace ariadne {

DenseKvCache::DenseKvCache(const KvShape& shape) : shape_(shape) {
  ARIADNE_CHECK(shape.n_layer > 0 && shape.n_kv_heads > 0 && shape.head_dim > 0 && shape.n_ctx > 0,
                "kv cache shape must be positive");
  const size_t per_layer = static_cast<size_t>(shape.n_kv_heads * shape.n_ctx * shape.head_dim);
  k_.assign(per_layer * shape.n_layer, 0.0f);
  v_.assign(per_layer * shape.n_layer, 0.0f);
  positions_.assign(static_cast<size_t>(shape.n_layer * shape.n_ctx), 0);
  n_used_.assign(static_cast<size_t>(shape.n_layer), 0);
}

uint64_t DenseKvCache::bytes_needed(const KvShape& s) {
  return 2ull * sizeof(float) * static_cast<uint64_t>(s.n_layer) * s.n_kv_heads * s.n_ctx * s.head_dim +
         sizeof(int32_t) * static_cast<uint64_t>(s.n_layer) * s.n_ctx;
}

void DenseKvCache::clear() {
  std::fill(n_used_.begin(), n_used_.end(), 0);
}

void DenseKvCache::store(const ops::Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
                         const float* k, const float* v) {
  int64_t& used = n_used_[static_cast<size_t>(layer)];
  if (used + n_tokens > shape_.n_ctx)
    fail("context full: {} cached + {} new tokens exceed the KV cache size of {} (raise -c)", used, n_tokens,
         shape_.n_ctx);
  const int64_t hd = shape_.head_dim;
  const int64_t row = shape_.n_kv_heads * hd;
  for (int64_t g = 0; g < shape_.n_kv_heads; ++g) {
    const size_t base = static_cast<size_t>(((layer * shape_.n_kv_heads + g) * shape_.n_ctx + used) * hd);
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::copy_n(k + t * row + g * hd, hd, k_.data() + base + t * hd);
      std::copy_n(v + t * row + g * hd, hd, v_.data() + base + t * hd);
    }
  }
  std::copy_n(positions, n_tokens, positions_.data() + layer * shape_.n_ctx + used);
  used += n_tokens;
}

void DenseKvCache::attend(const ops::Context& ctx, int64_t layer, const ops::AttentionQuery& query) {
  const int64_t hd = shape_.head_dim;
  const size_t layer_base = static_cast<size_t>(layer * shape_.n_kv_heads * shape_.n_ctx * hd);
  cpu::AttentionParams p{};
  p.q = query.q;
  p.n_tokens = query.n_tokens;
  p.q_positions = query.positions;
  p.n_kv_heads = shape_.n_kv_heads;
  p.head_dim = hd;
  p.k = k_.data() + layer_base;
  p.v = v_.data() + layer_base;
  p.kv_head_stride = shape_.n_ctx * hd;
  p.kv_entry_stride = hd;
  p.kv_positions = positions_.data() + layer * shape_.n_ctx;
  p.n_kv = n_used_[static_cast<size_t>(layer)];
  p.scale = query.scale;
  p.out = query.out;
  p.n_heads = query.n_heads;
  p.q_token_stride = query.n_heads * hd;
  p.out_token_stride = query.n_heads * hd;
  cpu::attention(p, ctx.pool);
}

}  // namespace ariadne
