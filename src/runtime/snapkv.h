// SnapKV ("SnapKV: LLM Knows What You are Looking for Before Generation", arXiv 2404.14469) at Chelsea's
// budget (chelsea.md §5): once a prompt is in a layer, the last w prompt queries (the observation window, 32
// by default) vote for the earlier entries — the softmax attention each receives from the window, summed
// over the window's queries and the GQA group's query heads, smoothed by a 1-D average pool of width 5
// (zero padding, divided by 5 as PyTorch's avg_pool1d) — and each KV head keeps its S sinks (none by
// default), the B - w - S best-voted entries and the window. Decode tokens are appended and never evicted, so
// a head holds up to B + generated tokens.
#pragma once

#include <vector>

#include "core/thread_pool.h"
#include "runtime/kv_policies.h"

namespace ariadne {

class SnapKvPolicy : public BudgetedPolicy {
 public:
  explicit SnapKvPolicy(KvPolicyConfig config);

  std::string_view name() const override { return "snapkv"; }
  void after_store(KvCache&, int64_t, int64_t) override {}
  void begin_prefill(KvCache& cache, int64_t n_positions) override;
  void after_attend(const ops::Context& ctx, KvCache& cache, int64_t layer,
                    const ops::AttentionQuery& query) override;
  void after_prefill(const ops::Context& ctx, KvCache& cache, int64_t layer) override;
  uint64_t peak_bytes(const KvCacheOptions& options) const override;
  std::string describe() const override;

  int64_t window() const { return window_; }
  int64_t sink() const { return sink_; }

 private:
  int64_t sink_;
  int64_t window_;
  // The last `window_` queries of the prompt at the layer being prefilled (layer-by-layer prefill feeds one
  // layer's chunks in order).
  int64_t window_layer_ = -1;
  int64_t n_heads_ = 0;
  float scale_ = 1.0f;
  std::vector<float> window_q_;      // [rows][n_heads * head_dim]
  std::vector<int32_t> window_pos_;  // [rows]
};

// The votes of one KV head (exposed for tests): for the first n_prefix of n entries (keys [n][head_dim], bias
// [n] or null, positions [n]), the softmax weight each receives from every query row of q ([n_q][head_dim]:
// each window query of each query head of the group, at positions q_pos [n_q]), summed; a query's softmax
// runs over the entries it may see (position <= its own) with logits scale * q.k + bias. Then the average
// pool of width 5. pool runs the logits (the result does not depend on its size).
std::vector<double> snapkv_votes(const float* keys, const float* bias, const int32_t* positions, int64_t n,
                                 int64_t n_prefix, const float* q, const int32_t* q_pos, int64_t n_q,
                                 int64_t head_dim, float scale, ThreadPool& pool);

}  // namespace ariadne
