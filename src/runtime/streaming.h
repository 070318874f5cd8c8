// StreamingLLM ("Efficient Streaming Language Models with Attention Sinks", arXiv 2309.17453) at Chelsea's
// budget (chelsea.md §5): each KV head keeps its first S entries (the attention sinks, 4 by default) and the
// B - S most recent ones. After a prompt the older entries are dropped at once; during decode the oldest
// non-sink entry is evicted at every step, so attention always reads B entries. Positions stay absolute (the
// original re-indexes them inside the cache; that is a variant we do not run).
//
// Eviction during decode marks the entry with a -inf logit bias (it then weighs nothing in attention, as if
// gone) and the marked entries are removed physically every g steps, so a step costs no memory move.
#pragma once

#include "runtime/kv_policies.h"

namespace ariadne {

class StreamingPolicy : public BudgetedPolicy {
 public:
  explicit StreamingPolicy(KvPolicyConfig config);

  std::string_view name() const override { return "streaming"; }
  void after_store(KvCache& cache, int64_t layer, int64_t n_new) override;
  void after_prefill(const ops::Context& ctx, KvCache& cache, int64_t layer) override;
  uint64_t peak_bytes(const KvCacheOptions& options) const override;
  std::string describe() const override;

  int64_t sink() const { return sink_; }

 private:
  // Keeps the sinks and the `window` most recent live entries of one head.
  void keep_recent(KvCache& cache, int64_t layer, int64_t kv_head, int64_t window);

  int64_t sink_;
};

}  // namespace ariadne
