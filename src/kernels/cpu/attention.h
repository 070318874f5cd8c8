// Causal scaled-dot-product attention of a block of query tokens over a KV cache, on the CPU.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace ariadne::cpu {

struct AttentionParams {
  const float* q;  // [n_tokens][q_token_stride], head h at q + h*head_dim
  int64_t q_token_stride;
  const int32_t* q_positions;  // [n_tokens] absolute position of each query (causal limit)
  int64_t n_tokens;
  int64_t n_heads;
  int64_t
      n_kv_heads;  // n_heads % n_kv_heads == 0 (GQA/MQA: query head h reads kv head h/(n_heads/n_kv_heads))
  int64_t head_dim;

  const float* k;  // key of entry j, kv head g at k + g*kv_head_stride + j*kv_entry_stride
  const float* v;  // same layout as k
  int64_t kv_head_stride;
  int64_t kv_entry_stride;
  const int32_t*
      kv_positions;  // [n_kv] position of each cached entry; entries with position > query's are masked
  int64_t n_kv;

  float scale;  // usually 1/sqrt(head_dim)
  float* out;   // [n_tokens][out_token_stride], head h at out + h*head_dim
  int64_t out_token_stride;
};

// Every (token, head) pair is computed by one thread with a fixed reduction order, so the result does not
// depend on the thread count.
void attention(const AttentionParams& p, ThreadPool& pool);

}  // namespace ariadne::cpu
