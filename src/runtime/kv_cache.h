// The KV cache: per layer and per KV head, entries kept in blocks of block_size rows that are allocated as
// entries arrive and freed when a policy shrinks the head, so the bytes a policy removes are really given
// back. Element type f32, f16, bf16 or q8_0 (llama.cpp's -ctk/-ctv). Exact byte accounting: bytes() is what
// the blocks and per-entry arrays hold at this moment.
//
// Two interfaces sit on it (docs/architecture.md, "KV memory and attention"):
//  - KvPolicy decides what the cache keeps (full here; Chelsea, StreamingLLM and SnapKV in chelsea.h,
//    streaming.h, snapkv.h). It may rewrite one head's entries through
//    key_row()/value_row()/bias()/compact().
//  - AttentionSelector decides what attention reads (dense; later HATA, exact top-k, Quest): an index subset
//    of a head's entries per query. Per-entry logit biases (Chelsea's ln(degree)) are read in every path.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <new>
#include <span>
#include <string>
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

// Counters a policy keeps about its work (zero for policies that never rewrite the cache).
struct KvPolicyStats {
  int64_t budget = 0;                // entries per KV head the last prompt was compressed to (B), 0: none yet
  bool budget_clamped = false;       // B was raised to the policy's smallest budget (chelsea.md §6)
  int64_t prefill_compressions = 0;  // (layer, prompt) pairs compressed after a prefill
  int64_t decode_compressions = 0;   // layers compressed during decode (every head of the layer at once)
  double prefill_seconds = 0;        // wall time spent compressing after prefills
  double decode_seconds = 0;         // wall time spent compressing during decode
};

// What the cache keeps. The cache calls after_store() after every store() and after_attend() after every
// attend(); a Session calls the prefill hooks around a multi-token evaluation when compresses_prefill().
class KvPolicy {
 public:
  virtual ~KvPolicy() = default;
  virtual std::string_view name() const = 0;
  virtual void after_store(KvCache& cache, int64_t layer, int64_t n_new) = 0;
  // After attention over `layer` (the queries have read the entries, the new ones included).
  virtual void after_attend(const ops::Context& ctx, KvCache& cache, int64_t layer,
                            const ops::AttentionQuery& query) {}

  // True when the policy rewrites the cache once a prompt is in: Session then evaluates every multi-token
  // call layer by layer (all chunks through layer l before any goes through layer l + 1), calling
  // begin_prefill, after_prefill(l) for each layer once it holds the whole prompt, then end_prefill. So at
  // most one layer is uncompressed at a time, and the prompt itself still sees every entry.
  virtual bool compresses_prefill() const { return false; }
  // n_positions: positions the sequence will hold once this prompt is in (n_past + prompt tokens).
  virtual void begin_prefill(KvCache& cache, int64_t n_positions) {}
  virtual void after_prefill(const ops::Context& ctx, KvCache& cache, int64_t layer) {}
  virtual void end_prefill(KvCache& cache) {}

  // Tokens the caller means to generate after the next prompt (chelsea.md's Γ), for budgets that count them.
  virtual void set_generation_budget(int64_t n_tokens) {}
  // The most bytes a cache of these options can hold under this policy (sizing before any work): every
  // head full unless the policy bounds it.
  virtual uint64_t peak_bytes(const KvCacheOptions& options) const;
  // Called by KvCache::clear(): the sequence starts over.
  virtual void reset() {}
  virtual KvPolicyStats stats() const { return {}; }
  // One line for users: the policy and its parameters ("chelsea: budget 0.2, ...").
  virtual std::string describe() const { return std::string(name()); }
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

  // Called once per decode step of `layer` before the per-head select() calls, with the whole query: a
  // selector may choose for every head at once here (on the context's threads) and only hand the result out
  // in select().
  virtual void begin_select(const ops::Context& ctx, const KvCache& cache, int64_t layer,
                            const ops::AttentionQuery& query) {}

  // Side data a selector keeps per entry (HATA's key codes, Quest's page bounds) follows the cache through
  // these calls. after_store: the last n_new entries of every head of `layer` are new (called before the
  // policy's after_store). after_compact: a head kept entries keep[0] < keep[1] < ... (compact(),
  // truncate()). after_rewrite: a policy changed entry j's key in place (a Chelsea centroid;
  // KvCache::key_rewritten). reset: the cache was cleared, or the selector was just set (entries already held
  // are new to it then, and it catches up on them by itself).
  virtual void after_store(const ops::Context& ctx, const KvCache& cache, int64_t layer, int64_t n_new) {}
  virtual void after_compact(const KvCache& cache, int64_t layer, int64_t kv_head,
                             std::span<const int64_t> keep) {}
  virtual void after_rewrite(const KvCache& cache, int64_t layer, int64_t kv_head, int64_t j) {}
  virtual void reset() {}
  // Whether attention should report, for the last query token of a call on `layer`, each query head's entry
  // of largest logit (cpu::AttentionParams::argmax_last); after_attend then receives it, [n_heads].
  virtual bool wants_argmax(int64_t layer) const { return false; }
  virtual void after_attend(const KvCache& cache, int64_t layer, std::span<const int32_t> argmax) {}
  // Bytes of that side data now.
  virtual uint64_t bytes() const { return 0; }
};

class KvCache : public ops::KvMemory {
 public:
  explicit KvCache(const KvCacheOptions& options);

  // Bytes a cache of these options holds when every head is full (decides whether it fits, up front).
  static uint64_t bytes_needed(const KvCacheOptions& options);
  // Bytes one cached token costs (K and V, all layers and heads, plus its position).
  static uint64_t bytes_per_token(const KvCacheOptions& options);
  // Bytes one head holds with n_entries entries (whole blocks, positions, and biases when with_bias).
  static uint64_t head_bytes(const KvCacheOptions& options, int64_t n_entries, bool with_bias);

  void set_policy(std::shared_ptr<KvPolicy> policy) { policy_ = std::move(policy); }
  // The selector is reset() when set.
  void set_selector(std::shared_ptr<AttentionSelector> selector);
  KvPolicy* policy() const { return policy_.get(); }
  AttentionSelector* selector() const { return selector_.get(); }

  void store(const ops::Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
             const float* k, const float* v) override;
  void attend(const ops::Context& ctx, int64_t layer, const ops::AttentionQuery& query) override;

  const KvCacheOptions& options() const { return options_; }
  int64_t size(int64_t layer, int64_t kv_head) const { return head(layer, kv_head).n; }
  uint64_t bytes() const;  // held now
  void clear();            // drops every entry and frees every block (and resets the policy)
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
  const float* bias(int64_t layer, int64_t kv_head) const;
  void enable_bias(int64_t layer, int64_t kv_head);
  // Keeps entries keep[0] < keep[1] < ... in that order (rows, positions, biases move down) and frees the
  // blocks no longer needed.
  void compact(int64_t layer, int64_t kv_head, std::span<const int64_t> keep);
  // A policy that rewrote entry j's key in place through key_row() says so here, so that what a selector
  // derived from the key (HATA's code) is derived again.
  void key_rewritten(int64_t layer, int64_t kv_head, int64_t j);

 private:
  // Blocks start on a cache line, so a row whose size is a multiple of 64 bytes (f16 rows of head_dim 32k)
  // spans whole lines: a sparse read that gathers rows at random fetches no line it does not use.
  static constexpr std::align_val_t kBlockAlign{64};
  struct FreeBlock {
    void operator()(uint8_t* p) const { ::operator delete[](p, kBlockAlign); }
  };
  using Block = std::unique_ptr<uint8_t[], FreeBlock>;
  struct Head {
    std::vector<Block> k_blocks;  // [n_blocks] -> [block_size][row_bytes]
    std::vector<Block> v_blocks;
    std::vector<int32_t> positions;                        // [n_blocks * block_size], first n valid
    int32_t latest = std::numeric_limits<int32_t>::min();  // no valid position is later (an upper bound)
    std::vector<float> bias;                               // empty, or like positions
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
