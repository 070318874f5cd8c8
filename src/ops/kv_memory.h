// The interface between a model and the KV cache. The model hands over each layer's new keys and values
// and asks for attention; what the memory keeps (dense, clustered, evicted) and what attention reads
// (all entries, a top-k subset) is the memory's business, so model code never changes with the policy.
#pragma once

#include <cstdint>

#include "ops/context.h"

namespace ariadne::ops {

struct AttentionQuery {
  const float* q;            // [n_tokens][n_heads*head_dim], RoPE applied
  const int32_t* positions;  // [n_tokens] absolute positions (causal limit of each query)
  int64_t n_tokens;
  int64_t n_heads;
  float scale;  // softmax scale, 1/sqrt(head_dim) for every supported family
  float* out;   // [n_tokens][n_heads*head_dim]
};

class KvMemory {
 public:
  virtual ~KvMemory() = default;

  // Appends n_tokens entries to `layer`: k and v are [n_tokens][n_kv_heads*head_dim] (K with RoPE applied).
  virtual void store(const Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
                     const float* k, const float* v) = 0;

  // Causal attention of the queries over what `layer` holds (including entries just stored).
  virtual void attend(const Context& ctx, int64_t layer, const AttentionQuery& query) = 0;
};

}  // namespace ariadne::ops
