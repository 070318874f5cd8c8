#include "runtime/chelsea.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/quants.h"

namespace ariadne {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// chelsea.md §6: an epsilon in the cosine's norm, so that a zero key has cosine 0 with everything.
constexpr float kNormEpsilon = 1e-12f;

}  // namespace

void chelsea_unit_keys(const float* keys, int64_t n, int64_t d, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const float* k = keys + i * d;
    const float norm = std::sqrt(cpu::dot_f32(k, k, d));
    const float inv = 1.0f / (norm + kNormEpsilon);
    for (int64_t j = 0; j < d; ++j) out[i * d + j] = k[j] * inv;
  }
}

std::vector<ChelseaEdge> chelsea_match(const float* unit, int64_t lo, int64_t hi, int64_t d, int64_t chunk,
                                       ThreadPool& pool) {
  ARIADNE_CHECK(chunk >= 2 && hi >= lo && d > 0, "chelsea_match: bad range or chunk");
  std::vector<ChelseaEdge> edges;
  edges.reserve(static_cast<size_t>((hi - lo + 1) / 2));
  std::vector<float> tile;  // [n_a][n_b] cosines of one chunk
  for (int64_t cs = lo; cs < hi; cs += chunk) {
    const int64_t m = std::min(cs + chunk, hi) - cs;
    const int64_t n_a = (m + 1) / 2;  // even offsets
    const int64_t n_b = m / 2;        // odd offsets
    if (n_b == 0) continue;           // a lone trailing A entry gets no edge
    tile.resize(static_cast<size_t>(n_a * n_b));
    // cos(a, b) for every A row (the "tokens") against every B row (the "weights"): every other row of unit.
    cpu::MatmulParams p;
    p.w_type = DType::F32;
    p.w = unit + (cs - lo + 1) * d;
    p.w_row_stride = static_cast<size_t>(2 * d) * sizeof(float);
    p.n_out = n_b;
    p.n_in = d;
    p.x = unit + (cs - lo) * d;
    p.x_stride = 2 * d;
    p.n_tokens = n_a;
    p.y = tile.data();
    p.y_stride = n_b;
    cpu::matmul(p, pool);
    for (int64_t i = 0; i < n_a; ++i) {
      const float* row = tile.data() + i * n_b;
      int64_t best = 0;
      for (int64_t j = 1; j < n_b; ++j)
        if (row[j] > row[best]) best = j;  // strictly greater: ties go to the lower b
      edges.push_back({row[best], cs + 2 * i, cs + 2 * best + 1});
    }
  }
  return edges;
}

std::vector<ChelseaEdge> chelsea_select(std::vector<ChelseaEdge> edges, int64_t r) {
  r = std::clamp<int64_t>(r, 0, static_cast<int64_t>(edges.size()));
  // (cos, a) is unique per edge (one edge per a), so the partial sort's order is the full sort's.
  std::partial_sort(edges.begin(), edges.begin() + r, edges.end(),
                    [](const ChelseaEdge& x, const ChelseaEdge& y) {
                      if (x.cos != y.cos) return x.cos > y.cos;
                      return x.a < y.a;
                    });
  edges.resize(static_cast<size_t>(r));
  return edges;
}

double chelsea_degree(const KvCache& cache, int64_t layer, int64_t kv_head, int64_t j) {
  const float* bias = cache.bias(layer, kv_head);
  return bias == nullptr ? 1.0 : std::round(std::exp(static_cast<double>(bias[j])));
}

int64_t chelsea_compress(KvCache& cache, int64_t layer, int64_t kv_head, int64_t target,
                         const ChelseaOptions& options, ThreadPool& pool, ChelseaSpans* spans,
                         const std::function<void()>& on_round) {
  const KvCacheOptions& o = cache.options();
  const int64_t d = o.head_dim;
  const cpu::RowKernels& kernels = cpu::row_kernels(o.type);
  std::vector<float> keys, unit, acc_k(static_cast<size_t>(d)), acc_v(static_cast<size_t>(d)),
      row(static_cast<size_t>(d));
  std::vector<ChelseaEdge> by_b;
  std::vector<char> removed;
  std::vector<int64_t> keep;
  int64_t rounds = 0;
  for (int64_t length = cache.size(layer, kv_head); length > target; length = cache.size(layer, kv_head)) {
    const int64_t lo = options.sink;
    const int64_t hi = length - options.recent;  // mergeable middle [lo, hi)
    if (hi - lo < 2) break;                      // nothing to merge (the policy's minimum budget avoids this)
    const int64_t n_mid = hi - lo;
    keys.resize(static_cast<size_t>(n_mid * d));
    unit.resize(keys.size());
    for (int64_t j = 0; j < n_mid; ++j)
      kernels.dequantize(cache.key_row(layer, kv_head, lo + j), &keys[j * d], d);
    chelsea_unit_keys(keys.data(), n_mid, d, unit.data());
    const std::vector<ChelseaEdge> edges = chelsea_match(unit.data(), lo, hi, d, options.chunk, pool);
    if (edges.empty()) break;
    by_b = chelsea_select(edges, length - target);
    std::sort(by_b.begin(), by_b.end(),
              [](const ChelseaEdge& x, const ChelseaEdge& y) { return x.b != y.b ? x.b < y.b : x.a < y.a; });

    cache.enable_bias(layer, kv_head);
    float* bias = cache.bias(layer, kv_head);
    removed.assign(static_cast<size_t>(length), 0);
    for (size_t e = 0; e < by_b.size();) {
      const int64_t b = by_b[e].b;
      // chelsea.md §2: w = deg[b] + Σ deg[a]; K[b] = (deg[b]·K[b] + Σ deg[a]·K[a]) / w, the same for V; in
      // f32.
      float w = static_cast<float>(chelsea_degree(cache, layer, kv_head, b));
      kernels.dequantize(cache.value_row(layer, kv_head, b), row.data(), d);
      for (int64_t i = 0; i < d; ++i) {
        acc_k[i] = w * keys[(b - lo) * d + i];
        acc_v[i] = w * row[i];
      }
      for (; e < by_b.size() && by_b[e].b == b; ++e) {
        const int64_t a = by_b[e].a;
        const auto deg_a = static_cast<float>(chelsea_degree(cache, layer, kv_head, a));
        kernels.dequantize(cache.value_row(layer, kv_head, a), row.data(), d);
        for (int64_t i = 0; i < d; ++i) {
          acc_k[i] += deg_a * keys[(a - lo) * d + i];
          acc_v[i] += deg_a * row[i];
        }
        w += deg_a;
        removed[static_cast<size_t>(a)] = 1;
        if (spans != nullptr) {
          auto& sb = (*spans)[static_cast<size_t>(b)];
          const auto& sa = (*spans)[static_cast<size_t>(a)];
          sb = {std::min(sb[0], sa[0]), std::max(sb[1], sa[1])};
        }
      }
      for (int64_t i = 0; i < d; ++i) {
        acc_k[i] /= w;
        acc_v[i] /= w;
      }
      kernels.quantize(acc_k.data(), cache.key_row(layer, kv_head, b), d);
      cache.key_rewritten(layer, kv_head, b);  // a selector's code of this key (HATA) is made again
      kernels.quantize(acc_v.data(), cache.value_row(layer, kv_head, b), d);
      bias[b] = std::log(w);
    }
    keep.clear();
    for (int64_t j = 0; j < length; ++j)
      if (removed[static_cast<size_t>(j)] == 0) keep.push_back(j);
    cache.compact(layer, kv_head, keep);
    if (spans != nullptr) {
      for (size_t i = 0; i < keep.size(); ++i) (*spans)[i] = (*spans)[static_cast<size_t>(keep[i])];
      spans->resize(keep.size());
    }
    ++rounds;
    if (on_round) on_round();
  }
  return rounds;
}

// ---- The policy ----

namespace {

ChelseaOptions chelsea_options(const KvPolicyConfig& c) {
  ChelseaOptions o;
  o.sink = c.sink >= 0 ? c.sink : 16;
  o.recent = c.recent >= 0 ? c.recent : 64;
  o.chunk = c.chunk;
  return o;
}

}  // namespace

ChelseaPolicy::ChelseaPolicy(KvPolicyConfig config)
    : BudgetedPolicy(std::move(config), 0), options_(chelsea_options(config_)) {
  // chelsea.md §2: B_min = S + W + 64, so that every round has a middle to merge.
  min_budget_ = std::max(kMinBudgetFloor, options_.sink + options_.recent + 64);
}

bool ChelseaPolicy::is_outlier(int64_t layer, int64_t kv_head, int64_t n_kv_heads) const {
  const auto i = static_cast<size_t>(layer * n_kv_heads + kv_head);
  return i < outlier_.size() && outlier_[i];
}

const ChelseaSpans& ChelseaPolicy::spans(int64_t layer, int64_t kv_head) const {
  ARIADNE_CHECK(config_.track_spans && !spans_.empty(), "chelsea: spans are tracked only with track_spans");
  // The head count is the spans' own: n_kv_heads is not known here, so spans_ is indexed as the cache is.
  return spans_.at(static_cast<size_t>(layer) * spans_per_layer_ + static_cast<size_t>(kv_head));
}

void ChelseaPolicy::reset() {
  BudgetedPolicy::reset();
  for (ChelseaSpans& s : spans_) s.clear();
  events_.clear();
}

void ChelseaPolicy::after_store(KvCache& cache, int64_t layer, int64_t n_new) {
  const KvCacheOptions& o = cache.options();
  if (outlier_.empty()) {
    outlier_.assign(static_cast<size_t>(o.n_layer * o.n_kv_heads), false);
    for (const int32_t id : config_.outliers) {
      if (id < 0 || id >= o.n_layer * o.n_kv_heads)
        fail(
            "chelsea: outlier head {} is outside the model's {} layers x {} KV heads (a sidecar for another "
            "model?)",
            id, o.n_layer, o.n_kv_heads);
      outlier_[static_cast<size_t>(id)] = true;
    }
  }
  if (!config_.track_spans) return;
  if (spans_.empty()) {
    spans_.resize(static_cast<size_t>(o.n_layer * o.n_kv_heads));
    spans_per_layer_ = static_cast<size_t>(o.n_kv_heads);
  }
  for (int64_t g = 0; g < o.n_kv_heads; ++g) {
    ChelseaSpans& s = spans_[static_cast<size_t>(layer * o.n_kv_heads + g)];
    const int64_t length = cache.size(layer, g);
    s.resize(static_cast<size_t>(length - n_new));  // a truncate() may have dropped the tail
    const int32_t* pos = cache.positions(layer, g);
    for (int64_t j = length - n_new; j < length; ++j) s.push_back({pos[j], pos[j]});
  }
}

bool ChelseaPolicy::compress_layer(const ops::Context& ctx, KvCache& cache, int64_t layer, int64_t above) {
  const KvCacheOptions& o = cache.options();
  std::vector<int64_t> heads;
  for (int64_t g = 0; g < o.n_kv_heads; ++g)
    if (!is_outlier(layer, g, o.n_kv_heads) && cache.size(layer, g) > above) heads.push_back(g);
  if (heads.empty()) return false;
  const int64_t target = budget_;
  ctx.pool.parallel_for(static_cast<int64_t>(heads.size()), [&](int64_t begin, int64_t end) {
    // One head per task, each with its own one-thread pool for the cosine tiles: heads are independent, and
    // the tiles' results do not depend on the pool.
    ThreadPool inline_pool(1);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t g = heads[static_cast<size_t>(i)];
      ChelseaSpans* s =
          config_.track_spans ? &spans_[static_cast<size_t>(layer * o.n_kv_heads + g)] : nullptr;
      chelsea_compress(cache, layer, g, target, options_, inline_pool, s);
    }
  });
  return true;
}

void ChelseaPolicy::after_attend(const ops::Context& ctx, KvCache& cache, int64_t layer,
                                 const ops::AttentionQuery& query) {
  if (in_prefill_ || keeps_everything() || query.n_tokens != 1) return;
  const int64_t n_positions = query.positions[0] + 1;
  const int64_t b = budget(cache, n_positions);
  const Clock::time_point start = Clock::now();
  // chelsea.md §2 DECODE: L >= B + g fires every g steps.
  if (!compress_layer(ctx, cache, layer, b + config_.interval - 1)) return;
  stats_.decode_seconds += seconds_since(start);
  ++stats_.decode_compressions;
  if (config_.track_spans) events_.push_back({layer, n_positions, false});
}

void ChelseaPolicy::after_prefill(const ops::Context& ctx, KvCache& cache, int64_t layer) {
  if (keeps_everything()) return;
  const Clock::time_point start = Clock::now();
  if (!compress_layer(ctx, cache, layer, budget_)) return;
  stats_.prefill_seconds += seconds_since(start);
  ++stats_.prefill_compressions;
  if (config_.track_spans) events_.push_back({layer, prefill_positions_, true});
}

uint64_t ChelseaPolicy::peak_bytes(const KvCacheOptions& o) const {
  if (keeps_everything()) return KvCache::bytes_needed(o);
  const int64_t cap = std::min(o.n_ctx, budget_at_capacity(o));
  std::vector<int64_t> outliers_in(static_cast<size_t>(o.n_layer), 0);
  for (const int32_t id : config_.outliers)
    if (id >= 0 && id < o.n_layer * o.n_kv_heads) ++outliers_in[static_cast<size_t>(id / o.n_kv_heads)];
  const uint64_t full = KvCache::head_bytes(o, o.n_ctx, true);
  const uint64_t compressed = KvCache::head_bytes(o, cap, true);
  uint64_t total = 0;
  int64_t fewest_outliers = o.n_kv_heads;
  for (int64_t l = 0; l < o.n_layer; ++l) {
    const int64_t n_out = outliers_in[static_cast<size_t>(l)];
    total += static_cast<uint64_t>(n_out) * full + static_cast<uint64_t>(o.n_kv_heads - n_out) * compressed;
    fewest_outliers = std::min(fewest_outliers, n_out);
  }
  // During a prefill one layer holds the whole prompt before it is compressed: the layer with the most
  // compressible heads costs the most.
  return total + static_cast<uint64_t>(o.n_kv_heads - fewest_outliers) * (full - compressed);
}

std::string ChelseaPolicy::describe() const {
  std::string s =
      fmt::format("chelsea: budget {}, sinks {}, recent {}, chunk {}, interval {}", config_.budget,
                  options_.sink, options_.recent, options_.chunk, config_.interval);
  if (config_.outliers.empty()) return s + ", no outlier heads";
  s += fmt::format(", {} outlier heads kept full", config_.outliers.size());
  if (!config_.outliers_source.empty()) s += " (from " + config_.outliers_source + ")";
  return s;
}

}  // namespace ariadne
