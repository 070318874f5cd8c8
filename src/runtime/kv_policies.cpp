#include "runtime/kv_policies.h"

#include <algorithm>
#include <climits>
#include <cmath>

#include "core/error.h"
#include "runtime/chelsea.h"
#include "runtime/snapkv.h"
#include "runtime/streaming.h"

namespace ariadne {

const std::vector<std::string>& kv_policy_names() {
  static const std::vector<std::string> names = {"full", "chelsea", "streaming", "snapkv"};
  return names;
}

void validate_kv_policy(const KvPolicyConfig& c) {
  const auto& names = kv_policy_names();
  if (std::find(names.begin(), names.end(), c.name) == names.end())
    fail("--kv-policy: unknown policy '{}' (expected full, chelsea, streaming or snapkv)", c.name);
  if (!std::isfinite(c.budget) || c.budget <= 0 || c.budget > INT32_MAX ||
      (c.budget > 1 && c.budget != std::floor(c.budget)))
    fail(
        "--kv-budget: {} is neither a fraction in (0, 1] of the prompt and generated tokens nor a whole "
        "number of entries per KV head (e.g. 0.2 or 1024)",
        c.budget);
  if (c.sink < -1) fail("--kv-sink: expected a count >= 0, got {}", c.sink);
  if (c.recent < -1) fail("--kv-recent: expected a count >= 0, got {}", c.recent);
  if (c.name == "streaming" && c.recent >= 0)
    fail("--kv-recent does not apply to streaming: it keeps the sinks and the B - sinks most recent entries");
  if (c.name == "snapkv" && c.recent == 0)
    fail("--kv-recent: snapkv's observation window needs at least 1 token");
  if (c.chunk < 2) fail("--chelsea-chunk: expected a chunk size >= 2, got {}", c.chunk);
  if (c.interval < 1) fail("--chelsea-interval: expected a number of decode steps >= 1, got {}", c.interval);
  if (c.generation < 0) fail("the generation budget must be >= 0 tokens, got {}", c.generation);
  if (c.name != "chelsea" && !c.outliers.empty())
    fail("outlier heads are a chelsea setting; the {} policy takes none", c.name);
}

std::shared_ptr<KvPolicy> make_kv_policy(const KvPolicyConfig& c) {
  validate_kv_policy(c);
  if (c.name == "chelsea") return std::make_shared<ChelseaPolicy>(c);
  if (c.name == "streaming") return std::make_shared<StreamingPolicy>(c);
  if (c.name == "snapkv") return std::make_shared<SnapKvPolicy>(c);
  return std::make_shared<FullPolicy>();
}

int64_t kv_budget_entries(double budget, int64_t n_positions, int64_t generation, int64_t n_ctx,
                          int64_t b_min, bool* clamped) {
  int64_t b = 0;
  if (budget > 1) {
    b = static_cast<int64_t>(budget);
  } else {
    const int64_t tokens = std::min(n_positions + generation, n_ctx);
    b = static_cast<int64_t>(std::floor(budget * static_cast<double>(tokens)));
  }
  if (clamped != nullptr) *clamped = b < b_min;
  return std::max(b, b_min);
}

BudgetedPolicy::BudgetedPolicy(KvPolicyConfig config, int64_t min_budget)
    : config_(std::move(config)), min_budget_(min_budget) {}

void BudgetedPolicy::reset() {
  budget_ = 0;
  in_prefill_ = false;
  prefill_positions_ = 0;
}

void BudgetedPolicy::begin_prefill(KvCache& cache, int64_t n_positions) {
  in_prefill_ = true;
  prefill_positions_ = n_positions;
  budget_ = 0;
  budget(cache, n_positions);
}

int64_t BudgetedPolicy::budget(const KvCache& cache, int64_t n_positions) {
  if (budget_ == 0) {
    budget_ = kv_budget_entries(config_.budget, n_positions, config_.generation, cache.options().n_ctx,
                                min_budget_, &stats_.budget_clamped);
    stats_.budget = budget_;
  }
  return budget_;
}

int64_t BudgetedPolicy::budget_at_capacity(const KvCacheOptions& o) const {
  return kv_budget_entries(config_.budget, o.n_ctx, 0, o.n_ctx, min_budget_) + config_.interval;
}

}  // namespace ariadne
