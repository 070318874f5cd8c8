// The KV cache: per layer and per KV head, entries kept in blocks of block_size rows that are allocated as
// entries arrive and freed when a policy shrinks the head, so the bytes a policy removes are really given
// back. Element type f32, f16, bf16 or q8_0 (llama.cpp's -ctk/-ctv). Exact byte accounting: bytes() is what
// the blocks and per-entry arrays hold at this moment.
//
// Two interfaces sit on it (docs/architecture.md, "KV memory and attention"):
//  - KvPolicy decides what the cache keeps (full; later Chelsea, StreamingLLM, SnapKV). It may rewrite one
//    head's entries through entries()/compact()/set_bias().
//  - AttentionSelector decides what attention reads (dense; later HATA, exact top-k, Quest): an index subset
//    of a head's entries per query. Per-entry logit biases (Chelsea's ln(degree)) are read in every path.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "ops/kv_memory.h"

namespace ariadne {

struct KvCacheOptions {
  int64_t n_layer = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t n_ctx = 0;         // most entries one head may hold
  DType type = DType::F32;   // f32, f16, bf16, q8_0 (head_dim a multiple of 32)
  int64_t block_size = 256;  // entries per block
};

class KvCache;

// What the cache keeps. Called after every store() with the layer just written.
class KvPolicy {
 public:
  virtual ~KvPolicy() = default;
  virtual std::string_view name() const = 0;
  virtual void after_store(KvCache& cache, int64_t layer, int64_t n_new) = 0;
};

// Keeps every entry: the dense baseline.
class FullPolicy : public KvPolicy {
 public:
  std::string_view name() const override { return "full"; }
  void after_store(KvCache&, int64_t, int64_t) override {}
};

// What attention reads for one KV head. Returning false means "all entries" (dense).
class AttentionSelector {
 public:
  virtual ~AttentionSelector() = default;
  virtual std::string_view name() const = 0;
  // q: the group's query heads for one token, [group][head_dim]. Fills indices (ascending) when sparse.
  virtual bool select(const KvCache& cache, int64_t layer, int64_t kv_head, const float* q, int64_t group,
                      std::vector<int32_t>& indices) = 0;
};

class KvCache : public ops::KvMemory {
 public:
  explicit KvCache(const KvCacheOptions& options);

  // Bytes a cache of these options holds when every head is full (decides whether it fits, up front).
  static uint64_t bytes_needed(const KvCacheOptions& options);
  // Bytes one cached token costs (K and V, all layers and heads, plus its position).
  static uint64_t bytes_per_token(const KvCacheOptions& options);

  void set_policy(std::shared_ptr<KvPolicy> policy) { policy_ = std::move(policy); }
  void set_selector(std::shared_ptr<AttentionSelector> selector) { selector_ = std::move(selector); }

  void store(const ops::Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
             const float* k, const float* v) override;
  void attend(const ops::Context& ctx, int64_t layer, const ops::AttentionQuery& query) override;

  const KvCacheOptions& options() const { return options_; }
  int64_t size(int64_t layer, int64_t kv_head) const { return head(layer, kv_head).n; }
  uint64_t bytes() const;  // held now
  void clear();            // drops every entry and frees every block
  // Drops every entry at position >= n_positions in every head (what a chat does when the re-rendered
  // conversation departs from what is cached) and frees the blocks no longer needed. Entries a policy kept
  // for earlier positions stay as the policy left them.
  void truncate(int64_t n_positions);

  // For policies: one head's entries.
  const int32_t* positions(int64_t layer, int64_t kv_head) const {
    return head(layer, kv_head).positions.data();
  }
  // Row j of K or V in the cache type (row_bytes(type, head_dim) bytes).
  const uint8_t* key_row(int64_t layer, int64_t kv_head, int64_t j) const;
  const uint8_t* value_row(int64_t layer, int64_t kv_head, int64_t j) const;
  uint8_t* key_row(int64_t layer, int64_t kv_head, int64_t j);
  uint8_t* value_row(int64_t layer, int64_t kv_head, int64_t j);
  // Per-entry additive logit bias (ln(degree)); enabling it sets every existing entry's bias to 0.
  float* bias(int64_t layer, int64_t kv_head);  // null until enable_bias
  void enable_bias(int64_t layer, int64_t kv_head);
  // Keeps entries keep[0] < keep[1] < ... in that order (rows, positions, biases move down) and frees the
  // blocks no longer needed.
  void compact(int64_t layer, int64_t kv_head, std::span<const int64_t> keep);

 private:
  struct Head {
    std::vector<std::unique_ptr<uint8_t[]>> k_blocks;  // [n_blocks] -> [block_size][row_bytes]
    std::vector<std::unique_ptr<uint8_t[]>> v_blocks;
    std::vector<int32_t> positions;  // [n_blocks * block_size], first n valid
    std::vector<float> bias;         // empty, or like positions
    int64_t n = 0;
  };
  Head& head(int64_t layer, int64_t kv_head) {
    return heads_[static_cast<size_t>(layer * options_.n_kv_heads + kv_head)];
  }
  const Head& head(int64_t layer, int64_t kv_head) const {
    return heads_[static_cast<size_t>(layer * options_.n_kv_heads + kv_head)];
  }
  void reserve(Head& h, int64_t n);  // blocks for n entries
  void release(Head& h);             // frees blocks beyond what h.n needs

  KvCacheOptions options_;
  size_t row_bytes_;
  std::vector<Head> heads_;  // [n_layer][n_kv_heads]
  std::shared_ptr<KvPolicy> policy_;
  std::shared_ptr<AttentionSelector> selector_;
};

}  // namespace ariadne
