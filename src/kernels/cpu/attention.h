// Causal scaled-dot-product attention of a block of query tokens over KV entries kept in blocks, on the CPU.
//
// How it runs (attention.cpp; arithmetic per instruction set in attention_{avx2,avx512}.cpp and the portable
// kernels in attention.cpp, chosen by active_isa()):
// - Flash-attention style: the entries read are cut into tiles of 64 and segments of 512 (boundaries count
//   from the first entry read, so they depend only on how many entries are read). Each tile's K and V rows
//   are converted to f32 once (f16/bf16/q8_0 exactly as dequantize_row), scored against a block of query
//   rows, and folded into a running max, sum and output (online softmax); memory is O(tile), never
//   tokens x entries. A segment's state is merged into the total with a log-sum-exp merge, segment by
//   segment in order.
// - The query rows of a work unit are a few tokens times the GQA group of one KV head, so each K/V row read
//   serves every query head of its group. Tiles in the future of every row (causal) are skipped.
// - Decode (few units) splits the sequence as well: every (unit, segment) is a task that writes its
//   segment's state, and each unit then merges its segments in order, as prefill does inline.
//
// Determinism: results do not depend on the thread count, bit for bit, and a token computed alone (decode,
// split-K) gives the same bits as the same token inside a prefill batch: every value of a query row is
// computed by the same operations in the same order whatever rows share its tile and whichever thread runs
// it. Results do differ (within ~1e-6 relative) between instruction sets.
#pragma once

#include <cstdint>
#include <limits>

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
  // No entry's position is later than this (an upper bound; the default claims nothing). When every query
  // row's position is at or past it, nothing can be masked and the positions are not read.
  int32_t max_position = std::numeric_limits<int32_t>::max();
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

  // Optional, [n_heads] out: for the last query token, per query head, the entry (an index into its KV head's
  // entries, as `indices` holds them) with the largest logit among those it reads, the lowest such index on a
  // tie; -1 when it sees none. What a sparse selector follows to the next step (sparse_attention.h).
  int32_t* argmax_last = nullptr;
};

// out[t][h] = sum_j softmax_j(scale * q[t][h] . k[j] + bias[j]) v[j] over the entries j of kv head
// h / group that are read (indices, or all n) and not in the query's future (positions[j] <= q_positions[t]);
// an entry whose logit is -inf weighs nothing, and a query that sees nothing gets zeros. head_dim must be a
// whole number of the KV type's blocks (checked). Deterministic as stated above.
void attention(const AttentionParams& p, ThreadPool& pool);

}  // namespace ariadne::cpu
