#include "runtime/chelsea_calibrate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "kernels/cpu/quants.h"
#include "models/model.h"
#include "runtime/kv_cache.h"

namespace ariadne {

namespace {

// The model's KV memory during calibration: every store goes to both caches; attention is the dense one's,
// and during measured steps the shadow's output for the same queries is compared with it per KV head.
class ShadowMemory : public ops::KvMemory {
 public:
  ShadowMemory(KvCache& dense, KvCache& shadow, std::vector<double>& error_sum)
      : dense_(dense), shadow_(shadow), error_sum_(error_sum) {}

  bool measure = false;

  void store(const ops::Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
             const float* k, const float* v) override {
    dense_.store(ctx, layer, n_tokens, positions, k, v);
    shadow_.store(ctx, layer, n_tokens, positions, k, v);
  }

  void attend(const ops::Context& ctx, int64_t layer, const ops::AttentionQuery& query) override {
    dense_.attend(ctx, layer, query);
    if (!measure) return;
    const int64_t d = dense_.options().head_dim;
    const int64_t n_kv = dense_.options().n_kv_heads;
    const int64_t group = query.n_heads / n_kv;
    const int64_t row = query.n_heads * d;
    out_.resize(static_cast<size_t>(query.n_tokens * row));
    ops::AttentionQuery shadow_query = query;
    shadow_query.out = out_.data();
    shadow_.attend(ctx, layer, shadow_query);
    for (int64_t t = 0; t < query.n_tokens; ++t)
      for (int64_t g = 0; g < n_kv; ++g) {
        double mean = 0;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          const float* ref = query.out + t * row + h * d;
          const float* got = out_.data() + t * row + h * d;
          double diff = 0, norm = 0;
          for (int64_t i = 0; i < d; ++i) {
            diff += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
            norm += static_cast<double>(ref[i]) * ref[i];
          }
          mean += std::sqrt(diff) / std::max(std::sqrt(norm), 1e-30);
        }
        error_sum_[static_cast<size_t>(layer * n_kv + g)] += mean / static_cast<double>(group);
      }
  }

 private:
  KvCache& dense_;
  KvCache& shadow_;
  std::vector<double>& error_sum_;
  std::vector<float> out_;
};

// The median cosine of the edges a first round would draw on one head (the middle's best partners).
double median_edge_cosine(const KvCache& cache, int64_t layer, int64_t kv_head, const ChelseaOptions& o,
                          ThreadPool& pool) {
  const int64_t d = cache.options().head_dim;
  const int64_t lo = o.sink, hi = cache.size(layer, kv_head) - o.recent;
  if (hi - lo < 2) return 0.0;
  std::vector<float> keys(static_cast<size_t>((hi - lo) * d)), unit(keys.size());
  const cpu::RowKernels& kernels = cpu::row_kernels(cache.options().type);
  for (int64_t j = lo; j < hi; ++j)
    kernels.dequantize(cache.key_row(layer, kv_head, j), &keys[(j - lo) * d], d);
  chelsea_unit_keys(keys.data(), hi - lo, d, unit.data());
  std::vector<float> cosines;
  for (const ChelseaEdge& e : chelsea_match(unit.data(), lo, hi, d, o.chunk, pool)) cosines.push_back(e.cos);
  if (cosines.empty()) return 0.0;
  std::nth_element(cosines.begin(), cosines.begin() + static_cast<int64_t>(cosines.size() / 2),
                   cosines.end());
  return cosines[cosines.size() / 2];
}

}  // namespace

ChelseaCalibration calibrate_chelsea(std::shared_ptr<const ModelSource> source,
                                     const std::vector<int32_t>& tokens, const ChelseaCalibrationOptions& o,
                                     const std::function<void(int64_t, int64_t)>& on_progress) {
  if (!(o.ratio > 0 && o.ratio < 1))
    fail("--budget: calibration measures a fraction in (0, 1) of each window, got {}", o.ratio);
  if (!(o.outlier_fraction >= 0 && o.outlier_fraction <= 1))
    fail("--outlier-fraction: expected a fraction in [0, 1], got {}", o.outlier_fraction);
  if (o.steps < 1 || o.ctx < o.steps + 2)
    fail("--steps: expected 1 to ctx - 2 teacher-forced steps (ctx {}), got {}", o.ctx, o.steps);
  if (o.windows < 1) fail("--windows: expected at least 1, got {}", o.windows);
  const auto n_text = static_cast<int64_t>(tokens.size());
  const int64_t n_windows = std::min(o.windows, n_text / o.ctx);
  if (n_windows == 0)
    fail("the calibration text has {} tokens, fewer than one window of {} (lower --ctx or give more text)",
         n_text, o.ctx);

  const std::unique_ptr<Model> model = Model::create(std::move(source));
  const ModelConfig& c = model->config();
  ThreadPool pool(o.n_threads);
  const ops::Context ctx{pool, {}, false};
  KvCacheOptions ko;
  ko.n_layer = c.n_layer;
  ko.n_kv_heads = c.n_head_kv;
  ko.head_dim = c.head_dim;
  ko.n_ctx = o.ctx;
  ko.type = o.kv_type;
  KvCache dense(ko), shadow(ko);
  KvPolicyConfig pc;
  pc.name = "chelsea";
  pc.budget = o.ratio;
  pc.sink = o.chelsea.sink;
  pc.recent = o.chelsea.recent;
  pc.chunk = o.chelsea.chunk;
  pc.interval = o.interval;
  pc.generation = o.steps;
  validate_kv_policy(pc);
  auto policy = std::make_shared<ChelseaPolicy>(pc);
  shadow.set_policy(policy);

  const int64_t n_heads = c.n_layer * c.n_head_kv;
  std::vector<double> error_sum(static_cast<size_t>(n_heads), 0.0), cosine_sum(error_sum);
  ShadowMemory memory(dense, shadow, error_sum);
  std::vector<float> logits(static_cast<size_t>(c.n_vocab));
  const int64_t n_prefill = o.ctx - o.steps;
  for (int64_t w = 0; w < n_windows; ++w) {
    std::vector<int32_t> window(tokens.begin() + w * o.ctx, tokens.begin() + (w + 1) * o.ctx);
    if (o.bos_id >= 0) window[0] = o.bos_id;
    std::vector<int32_t> positions(static_cast<size_t>(o.ctx));
    std::iota(positions.begin(), positions.end(), 0);
    dense.clear();
    shadow.clear();
    memory.measure = false;
    // Dense prefill, layer by layer so that the shadow compresses each layer once the prompt is in it.
    const Batch prompt{window.data(), positions.data(), n_prefill, false};
    policy->begin_prefill(shadow, n_prefill);
    model->forward_layer_major(ctx, prompt, o.n_batch, memory, logits.data(), {},
                               [&](int64_t layer) { policy->after_prefill(ctx, shadow, layer); });
    policy->end_prefill(shadow);
    for (int64_t l = 0; l < c.n_layer; ++l)
      for (int64_t g = 0; g < c.n_head_kv; ++g)
        cosine_sum[static_cast<size_t>(l * c.n_head_kv + g)] +=
            median_edge_cosine(dense, l, g, o.chelsea, pool);
    memory.measure = true;
    for (int64_t t = n_prefill; t < o.ctx; ++t) {
      const Batch step{window.data() + t, positions.data() + t, 1, false};
      model->forward(ctx, step, memory, logits.data());
    }
    if (on_progress) on_progress(w + 1, n_windows);
  }

  ChelseaCalibration r;
  r.n_windows = n_windows;
  const auto n_measured = static_cast<double>(n_windows * o.steps);
  r.head_error.resize(static_cast<size_t>(n_heads));
  r.layer_error.assign(static_cast<size_t>(c.n_layer), 0.0);
  r.edge_cosine.resize(static_cast<size_t>(n_heads));
  for (int64_t i = 0; i < n_heads; ++i) {
    r.edge_cosine[static_cast<size_t>(i)] =
        cosine_sum[static_cast<size_t>(i)] / static_cast<double>(n_windows);
    r.head_error[static_cast<size_t>(i)] = error_sum[static_cast<size_t>(i)] / n_measured;
    r.layer_error[static_cast<size_t>(i / c.n_head_kv)] +=
        r.head_error[static_cast<size_t>(i)] / static_cast<double>(c.n_head_kv);
  }
  const auto n_outliers = static_cast<int64_t>(std::ceil(o.outlier_fraction * static_cast<double>(n_heads)));
  std::vector<int32_t> order(static_cast<size_t>(n_heads));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) {
    return r.head_error[static_cast<size_t>(x)] > r.head_error[static_cast<size_t>(y)];
  });
  r.outliers.assign(order.begin(), order.begin() + std::min(n_outliers, n_heads));
  std::sort(r.outliers.begin(), r.outliers.end());
  return r;
}

}  // namespace ariadne
