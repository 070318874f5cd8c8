// The KV policies by name — full, chelsea (chelsea.h), streaming (streaming.h), snapkv (snapkv.h) — built
// from one set of options, as `--kv-policy NAME --kv-budget B ...` and eval's `NAME:BUDGET` give them, and
// the budget rule they share (chelsea.md §2, "Budget"; §5 "equal budget": every policy keeps the same number
// of entries B per (layer, KV head) after a prompt).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/kv_cache.h"

namespace ariadne {

struct KvPolicyConfig {
  std::string name = "full";  // full, chelsea, streaming, snapkv
  // Entries each KV head keeps: a fraction R in (0, 1] of prompt + generated tokens (1: keep everything, the
  // policy never runs), or a whole number > 1 of entries.
  double budget = 0.2;
  int64_t sink = -1;    // protected entries at the start; -1: the policy's default (chelsea 16, streaming 4,
                        // snapkv 0)
  int64_t recent = -1;  // chelsea: protected most recent entries (default 64); snapkv: the observation
                        // window (default 32); streaming takes none (its window is B - sinks)
  int64_t chunk = 256;  // chelsea: chunk size c of the soft matching
  int64_t interval = 64;  // chelsea, streaming: decode steps between compressions (g), also the slack over B
  int64_t generation = 512;  // tokens expected after each prompt (Γ); set_generation_budget() replaces it
  // chelsea: KV heads kept full, as layer * n_kv_heads + head (the outlier heads of `ariadne calibrate`).
  std::vector<int32_t> outliers;
  std::string outliers_source;  // where they came from (a sidecar path), for describe()
  bool track_spans = false;     // chelsea: keep [first, last] position spans per entry (tests, debugging)
};

// The names make_kv_policy() knows, in help order.
const std::vector<std::string>& kv_policy_names();

// Throws Error naming the flag (--kv-policy, --kv-budget, --kv-sink, --kv-recent, --chelsea-chunk,
// --chelsea-interval) when a value is out of range or does not apply to the policy.
void validate_kv_policy(const KvPolicyConfig& config);

// The policy of a checked config (validate_kv_policy first); "full" gives FullPolicy.
std::shared_ptr<KvPolicy> make_kv_policy(const KvPolicyConfig& config);

// B = max(b_min, floor(R * min(n_positions + generation, n_ctx))) for a fraction R, or max(b_min, budget) for
// a number of entries (chelsea.md §2; a sequence never outgrows n_ctx, so neither does B). *clamped tells
// whether b_min decided.
int64_t kv_budget_entries(double budget, int64_t n_positions, int64_t generation, int64_t n_ctx,
                          int64_t b_min, bool* clamped = nullptr);

// The smallest budget of every policy: chelsea.md's B_min = S + W + 64 at Chelsea's defaults. Streaming and
// SnapKV could go lower, but equal budgets (§5) need one floor; a policy whose own minimum is larger (more
// sinks or a longer protected window) uses that.
constexpr int64_t kMinBudgetFloor = 16 + 64 + 64;

// What the three compressing policies share: the budget of the current prompt, the prefill state, the
// counters.
class BudgetedPolicy : public KvPolicy {
 public:
  BudgetedPolicy(KvPolicyConfig config, int64_t min_budget);

  bool compresses_prefill() const override { return !keeps_everything(); }
  void begin_prefill(KvCache& cache, int64_t n_positions) override;
  void end_prefill(KvCache& cache) override { in_prefill_ = false; }
  void set_generation_budget(int64_t n_tokens) override { config_.generation = n_tokens; }
  void reset() override;
  KvPolicyStats stats() const override { return stats_; }

  const KvPolicyConfig& config() const { return config_; }
  int64_t min_budget() const { return min_budget_; }

 protected:
  // Budget 1 (as a fraction): the policy never touches the cache, so outputs are dense bit for bit.
  bool keeps_everything() const { return config_.budget == 1.0; }
  // B of the current sequence: set by begin_prefill; before any prefill (a sequence fed one token at a
  // time) it is computed from the positions held when first needed.
  int64_t budget(const KvCache& cache, int64_t n_positions);
  // The most entries a compressed head holds between compressions, for peak_bytes: B at n_ctx plus slack.
  int64_t budget_at_capacity(const KvCacheOptions& options) const;

  KvPolicyConfig config_;
  int64_t min_budget_;
  int64_t budget_ = 0;  // 0: not known yet
  bool in_prefill_ = false;
  int64_t prefill_positions_ = 0;  // n_positions of the last begin_prefill
  KvPolicyStats stats_;
};

}  // namespace ariadne
