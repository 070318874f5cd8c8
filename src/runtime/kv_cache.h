// Dense KV cache: every entry of every layer kept in f32. Sized once, before any work starts, from the
// requested context; a request beyond it is refused with an Error instead of growing.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/kv_memory.h"

namespace ariadne {

struct KvShape {
  int64_t n_layer;
  int64_t n_kv_heads;
  int64_t head_dim;
  int64_t n_ctx;  // entries per layer
};

class DenseKvCache : public ops::KvMemory {
 public:
  explicit DenseKvCache(const KvShape& shape);

  // Bytes the cache of this shape needs (both K and V, all layers).
  static uint64_t bytes_needed(const KvShape& shape);

  void store(const ops::Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
             const float* k, const float* v) override;
  void attend(const ops::Context& ctx, int64_t layer, const ops::AttentionQuery& query) override;

  int64_t size(int64_t layer) const { return n_used_[static_cast<size_t>(layer)]; }
  int64_t capacity() const { return shape_.n_ctx; }
  uint64_t bytes() const { return bytes_needed(shape_); }
  void clear();

 private:
  KvShape shape_;
  std::vector<float> k_;            // [n_layer][n_kv_heads][n_ctx][head_dim]
  std::vector<float> v_;            // [n_layer][n_kv_heads][n_ctx][head_dim]
  std::vector<int32_t> positions_;  // [n_layer][n_ctx]
  std::vector<int64_t> n_used_;     // [n_layer]
};

}  // namespace ariadne
