#include "runtime/streaming.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <vector>

#include <fmt/format.h>

namespace ariadne {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

StreamingPolicy::StreamingPolicy(KvPolicyConfig config)
    : BudgetedPolicy(std::move(config), 0), sink_(config_.sink >= 0 ? config_.sink : 4) {
  min_budget_ = std::max(kMinBudgetFloor, sink_ + 64);
}

void StreamingPolicy::keep_recent(KvCache& cache, int64_t layer, int64_t kv_head, int64_t window) {
  const int64_t length = cache.size(layer, kv_head);
  const float* bias = cache.bias(layer, kv_head);
  std::vector<int64_t> keep;
  for (int64_t j = 0; j < std::min(sink_, length); ++j) keep.push_back(j);
  std::vector<int64_t> recent;
  for (int64_t j = length; j-- > sink_ && static_cast<int64_t>(recent.size()) < window;)
    if (bias == nullptr || bias[j] != -INFINITY) recent.push_back(j);
  keep.insert(keep.end(), recent.rbegin(), recent.rend());
  if (static_cast<int64_t>(keep.size()) != length) cache.compact(layer, kv_head, keep);
}

void StreamingPolicy::after_store(KvCache& cache, int64_t layer, int64_t n_new) {
  if (in_prefill_ || keeps_everything()) return;
  const Clock::time_point start = Clock::now();
  const KvCacheOptions& o = cache.options();
  const int64_t b = budget(cache, cache.positions(layer, 0)[cache.size(layer, 0) - 1] + 1);
  bool compacted = false;
  for (int64_t g = 0; g < o.n_kv_heads; ++g) {
    const int64_t length = cache.size(layer, g);
    if (length <= b) continue;
    cache.enable_bias(layer, g);
    float* bias = cache.bias(layer, g);
    // The live entries are the sinks and the newest B - S; everything between is evicted (-inf weighs
    // nothing). Entries evicted earlier are already marked, so the walk stops at the first marked one.
    for (int64_t j = length - (b - sink_); j-- > sink_ && bias[j] != -INFINITY;) bias[j] = -INFINITY;
    if (length >= b + config_.interval) {
      keep_recent(cache, layer, g, b - sink_);
      compacted = true;
    }
  }
  if (compacted) {
    ++stats_.decode_compressions;
    stats_.decode_seconds += seconds_since(start);
  }
}

void StreamingPolicy::after_prefill(const ops::Context&, KvCache& cache, int64_t layer) {
  if (keeps_everything()) return;
  const Clock::time_point start = Clock::now();
  bool any = false;
  for (int64_t g = 0; g < cache.options().n_kv_heads; ++g) {
    if (cache.size(layer, g) <= budget_) continue;
    keep_recent(cache, layer, g, budget_ - sink_);
    any = true;
  }
  if (any) {
    ++stats_.prefill_compressions;
    stats_.prefill_seconds += seconds_since(start);
  }
}

uint64_t StreamingPolicy::peak_bytes(const KvCacheOptions& o) const {
  if (keeps_everything()) return KvCache::bytes_needed(o);
  const int64_t cap = std::min(o.n_ctx, budget_at_capacity(o));
  const uint64_t full = KvCache::head_bytes(o, o.n_ctx, true);
  const uint64_t compressed = KvCache::head_bytes(o, cap, true);
  // Every layer compressed, except the one a prefill has just filled.
  return static_cast<uint64_t>(o.n_kv_heads) * (static_cast<uint64_t>(o.n_layer - 1) * compressed + full);
}

std::string StreamingPolicy::describe() const {
  return fmt::format("streaming: budget {}, sinks {}, eviction compacted every {} steps", config_.budget,
                     sink_, config_.interval);
}

}  // namespace ariadne
