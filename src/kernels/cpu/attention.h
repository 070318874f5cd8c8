// Causal scaled-dot-product attention of a block of query tokens over KV entries kept in blocks, on the CPU.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace ariadne::cpu {

// The entries of one KV head, as attention reads them. Entry j lives in block j / block_size at row
// j % block_size; rows are head_dim elements of `type` (f32, f16, bf16 or q8_0).
struct KvHeadView {
  const uint8_t* const* k_blocks;  // [n_blocks] -> [block_size][row_bytes]
  const uint8_t* const* v_blocks;  // same layout
  const int32_t* positions;        // [n] absolute position of each entry (causal mask)
  const float* bias;               // [n] added to the entry's logit (Chelsea's ln(degree)); null = none
  const int32_t* indices;          // [n_indices] the entries to read (sparse attention); null = all n
  int64_t n;
  int64_t n_indices;
};

struct AttentionParams {
  const float* q;  // [n_tokens][q_token_stride], head h at q + h*head_dim
  int64_t q_token_stride;
  const int32_t* q_positions;  // [n_tokens] absolute position of each query (causal limit)
  int64_t n_tokens;
  int64_t n_heads;
  int64_t n_kv_heads;  // query head h reads kv head h / (n_heads / n_kv_heads) (GQA/MQA)
  int64_t head_dim;

  DType kv_type;
  int64_t block_size;       // entries per block
  const KvHeadView* heads;  // [n_kv_heads]

  float scale;  // usually 1/sqrt(head_dim)
  float* out;   // [n_tokens][out_token_stride], head h at out + h*head_dim
  int64_t out_token_stride;
};

// Every (token, head) pair is computed by one thread with a fixed reduction order, so the result does not
// depend on the thread count.
void attention(const AttentionParams& p, ThreadPool& pool);

}  // namespace ariadne::cpu
