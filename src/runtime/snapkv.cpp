#include "runtime/snapkv.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quants.h"

namespace ariadne {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

constexpr int64_t kPool = 5;  // SnapKV's kernel_size

}  // namespace

std::vector<double> snapkv_votes(const float* keys, const float* bias, const int32_t* positions, int64_t n,
                                 int64_t n_prefix, const float* q, const int32_t* q_pos, int64_t n_q,
                                 int64_t head_dim, float scale, ThreadPool& pool) {
  std::vector<float> dots(static_cast<size_t>(n_q * n));  // [n_q][n]: q . k
  cpu::MatmulParams p;
  p.w_type = DType::F32;
  p.w = keys;
  p.w_row_stride = static_cast<size_t>(head_dim) * sizeof(float);
  p.n_out = n;
  p.n_in = head_dim;
  p.x = q;
  p.x_stride = head_dim;
  p.n_tokens = n_q;
  p.y = dots.data();
  p.y_stride = n;
  cpu::matmul(p, pool);
  std::vector<double> votes(static_cast<size_t>(n_prefix), 0.0);
  std::vector<double> logit(static_cast<size_t>(n));
  for (int64_t t = 0; t < n_q; ++t) {
    double mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      double l = -INFINITY;
      if (positions[j] <= q_pos[t])
        l = static_cast<double>(scale) * dots[static_cast<size_t>(t * n + j)] +
            (bias != nullptr ? bias[j] : 0.0);
      logit[static_cast<size_t>(j)] = l;
      mx = std::max(mx, l);
    }
    if (mx == -INFINITY) continue;
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(logit[static_cast<size_t>(j)] - mx);
    for (int64_t j = 0; j < n_prefix; ++j)
      votes[static_cast<size_t>(j)] += std::exp(logit[static_cast<size_t>(j)] - mx) / sum;
  }
  // avg_pool1d(kernel 5, stride 1, padding 2), padding counted: every window divides by 5.
  std::vector<double> pooled(static_cast<size_t>(n_prefix), 0.0);
  for (int64_t j = 0; j < n_prefix; ++j) {
    double s = 0;
    for (int64_t i = std::max<int64_t>(0, j - kPool / 2); i <= std::min(n_prefix - 1, j + kPool / 2); ++i)
      s += votes[static_cast<size_t>(i)];
    pooled[static_cast<size_t>(j)] = s / static_cast<double>(kPool);
  }
  return pooled;
}

SnapKvPolicy::SnapKvPolicy(KvPolicyConfig config)
    : BudgetedPolicy(std::move(config), 0),
      sink_(config_.sink >= 0 ? config_.sink : 0),
      window_(config_.recent >= 0 ? config_.recent : 32) {
  min_budget_ = std::max(kMinBudgetFloor, sink_ + window_ + 64);
}

void SnapKvPolicy::begin_prefill(KvCache& cache, int64_t n_positions) {
  BudgetedPolicy::begin_prefill(cache, n_positions);
  window_layer_ = -1;  // the window is this prompt's
  window_q_.clear();
  window_pos_.clear();
}

void SnapKvPolicy::after_attend(const ops::Context&, KvCache& cache, int64_t layer,
                                const ops::AttentionQuery& query) {
  if (!in_prefill_ || keeps_everything()) return;
  const int64_t row = query.n_heads * cache.options().head_dim;
  if (layer != window_layer_) {
    window_layer_ = layer;
    window_q_.clear();
    window_pos_.clear();
  }
  n_heads_ = query.n_heads;
  scale_ = query.scale;
  window_q_.insert(window_q_.end(), query.q, query.q + query.n_tokens * row);
  window_pos_.insert(window_pos_.end(), query.positions, query.positions + query.n_tokens);
  const auto rows = static_cast<int64_t>(window_pos_.size());
  if (rows > window_) {
    window_q_.erase(window_q_.begin(), window_q_.begin() + (rows - window_) * row);
    window_pos_.erase(window_pos_.begin(), window_pos_.begin() + (rows - window_));
  }
}

void SnapKvPolicy::after_prefill(const ops::Context& ctx, KvCache& cache, int64_t layer) {
  if (keeps_everything() || layer != window_layer_) return;
  const KvCacheOptions& o = cache.options();
  const int64_t d = o.head_dim;
  const int64_t group = n_heads_ / o.n_kv_heads;
  const auto n_window = static_cast<int64_t>(window_pos_.size());
  std::vector<int64_t> heads;
  for (int64_t g = 0; g < o.n_kv_heads; ++g)
    if (cache.size(layer, g) > budget_) heads.push_back(g);
  if (heads.empty()) return;
  const Clock::time_point start = Clock::now();
  const cpu::RowKernels& kernels = cpu::row_kernels(o.type);
  ctx.pool.parallel_for(static_cast<int64_t>(heads.size()), [&](int64_t begin, int64_t end) {
    ThreadPool inline_pool(1);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = heads[static_cast<size_t>(i)];
      const int64_t length = cache.size(layer, g);
      const int64_t w = std::min(n_window, length);
      const int64_t n_prefix = length - w;  // the window's own entries are the last w
      const int64_t sinks = std::min(sink_, n_prefix);
      const int64_t n_top = std::max<int64_t>(0, budget_ - w - sinks);
      std::vector<float> keys(static_cast<size_t>(length * d));
      for (int64_t j = 0; j < length; ++j) kernels.dequantize(cache.key_row(layer, g, j), &keys[j * d], d);
      // The group's query heads for every window token: [w * group][d].
      std::vector<float> q(static_cast<size_t>(n_window * group * d));
      std::vector<int32_t> q_pos(static_cast<size_t>(n_window * group));
      for (int64_t t = 0; t < n_window; ++t)
        for (int64_t h = 0; h < group; ++h) {
          const float* src = window_q_.data() + t * n_heads_ * d + (g * group + h) * d;
          std::copy(src, src + d, q.begin() + (t * group + h) * d);
          q_pos[static_cast<size_t>(t * group + h)] = window_pos_[static_cast<size_t>(t)];
        }
      const std::vector<double> votes =
          snapkv_votes(keys.data(), cache.bias(layer, g), cache.positions(layer, g), length, n_prefix,
                       q.data(), q_pos.data(), n_window * group, d, scale_, inline_pool);
      std::vector<int64_t> candidates(static_cast<size_t>(n_prefix - sinks));
      std::iota(candidates.begin(), candidates.end(), sinks);
      const int64_t n_chosen = std::min<int64_t>(n_top, static_cast<int64_t>(candidates.size()));
      std::partial_sort(candidates.begin(), candidates.begin() + n_chosen, candidates.end(),
                        [&](int64_t x, int64_t y) {
                          const double vx = votes[static_cast<size_t>(x)], vy = votes[static_cast<size_t>(y)];
                          return vx != vy ? vx > vy : x < y;
                        });
      candidates.resize(static_cast<size_t>(n_chosen));
      std::sort(candidates.begin(), candidates.end());
      std::vector<int64_t> keep;
      for (int64_t j = 0; j < sinks; ++j) keep.push_back(j);
      keep.insert(keep.end(), candidates.begin(), candidates.end());
      for (int64_t j = n_prefix; j < length; ++j) keep.push_back(j);
      cache.compact(layer, g, keep);
    }
  });
  ++stats_.prefill_compressions;
  stats_.prefill_seconds += seconds_since(start);
}

uint64_t SnapKvPolicy::peak_bytes(const KvCacheOptions& o) const {
  if (keeps_everything()) return KvCache::bytes_needed(o);
  // Decode tokens are appended without eviction: B + Γ at most.
  const int64_t cap = std::min(o.n_ctx, budget_at_capacity(o) - config_.interval + config_.generation);
  const uint64_t full = KvCache::head_bytes(o, o.n_ctx, false);
  const uint64_t compressed = KvCache::head_bytes(o, cap, false);
  return static_cast<uint64_t>(o.n_kv_heads) * (static_cast<uint64_t>(o.n_layer - 1) * compressed + full);
}

std::string SnapKvPolicy::describe() const {
  return fmt::format("snapkv: budget {}, observation window {}, sinks {}, pool 5", config_.budget, window_,
                     sink_);
}

}  // namespace ariadne
