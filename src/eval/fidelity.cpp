#include "eval/fidelity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <span>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu/quants.h"
#include "models/model.h"
#include "runtime/kv_cache.h"
#include "runtime/session.h"
#include "runtime/sparse_attention.h"

namespace ariadne::eval {

namespace {

// Every sample of one metric, [n_layer][heads].
class Samples {
 public:
  Samples(int64_t n_layer, int64_t n_heads)
      : v_(static_cast<size_t>(n_layer), std::vector<std::vector<double>>(static_cast<size_t>(n_heads))) {}
  void add(int64_t layer, int64_t head, double x) {
    v_[static_cast<size_t>(layer)][static_cast<size_t>(head)].push_back(x);
  }
  MetricTable table() const;

 private:
  std::vector<std::vector<std::vector<double>>> v_;
};

MetricSummary summary(std::vector<double> x) {
  MetricSummary s;
  s.n = static_cast<int64_t>(x.size());
  if (x.empty()) return s;
  std::sort(x.begin(), x.end());
  s.mean = std::accumulate(x.begin(), x.end(), 0.0) / static_cast<double>(x.size());
  const auto rank = static_cast<size_t>(std::ceil(0.95 * static_cast<double>(x.size())));
  s.p95 = x[std::min(x.size(), std::max<size_t>(rank, 1)) - 1];
  return s;
}

MetricTable Samples::table() const {
  MetricTable t;
  double sum = 0;
  int64_t n_layers = 0;
  for (const auto& heads : v_) {
    std::vector<double> all;
    std::vector<MetricSummary> per_head;
    for (const auto& h : heads) {
      all.insert(all.end(), h.begin(), h.end());
      per_head.push_back(summary(h));
    }
    t.layers.push_back(summary(std::move(all)));
    t.heads.push_back(std::move(per_head));
    if (t.layers.back().n > 0) {
      sum += t.layers.back().mean;
      ++n_layers;
    }
  }
  t.mean_over_layers = n_layers > 0 ? sum / static_cast<double>(n_layers) : std::nan("");
  return t;
}

// ln Σ exp(x) in double; -inf entries (evicted) weigh nothing.
double log_sum_exp(std::span<const double> x) {
  double mx = -std::numeric_limits<double>::infinity();
  for (double v : x) mx = std::max(mx, v);
  if (!std::isfinite(mx)) return mx;
  double sum = 0;
  for (double v : x) sum += std::exp(v - mx);
  return mx + std::log(sum);
}

// One head's keys as f32 rows, and the logits of the group's query heads over them in double.
struct HeadLogits {
  int64_t n = 0;
  std::vector<float> keys;                 // [n][d]
  std::vector<std::vector<double>> logit;  // [group][n], with the entries' biases
  std::vector<double> log_z;               // [group]
};

void head_logits(const KvCache& cache, int64_t layer, int64_t g, const float* q, int64_t group, float scale,
                 HeadLogits& out) {
  const int64_t d = cache.options().head_dim;
  const int64_t n = cache.size(layer, g);
  const cpu::RowKernels& kernels = cpu::row_kernels(cache.options().type);
  out.n = n;
  out.keys.resize(static_cast<size_t>(n * d));
  for (int64_t j = 0; j < n; ++j) kernels.dequantize(cache.key_row(layer, g, j), &out.keys[j * d], d);
  const float* bias = cache.bias(layer, g);
  out.logit.resize(static_cast<size_t>(group));
  out.log_z.resize(static_cast<size_t>(group));
  for (int64_t h = 0; h < group; ++h) {
    std::vector<double>& l = out.logit[static_cast<size_t>(h)];
    l.resize(static_cast<size_t>(n));
    const float* qh = q + h * d;
    for (int64_t j = 0; j < n; ++j) {
      double dot = 0;
      const float* k = &out.keys[j * d];
      for (int64_t i = 0; i < d; ++i) dot += static_cast<double>(qh[i]) * k[i];
      l[static_cast<size_t>(j)] = dot * scale + (bias != nullptr ? bias[j] : 0.0);
    }
    out.log_z[static_cast<size_t>(h)] = log_sum_exp(l);
  }
}

struct Lane {
  MethodSpec spec;
  std::unique_ptr<Session> session;
  bool policy_metrics = false;  // the method's KV policy is not `full`
  Samples error, recall, mass, kept_mass, log_z;
};

// The model's KV memory: every store goes to the dense cache and to each method's; attention is the dense
// one's. While measuring (single-token steps) each method attends with the same query and is compared.
class FidelityMemory : public ops::KvMemory {
 public:
  FidelityMemory(KvCache& dense, std::vector<Lane>& lanes) : dense_(dense), lanes_(lanes) {}

  bool measure = false;

  void store(const ops::Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
             const float* k, const float* v) override {
    dense_.store(ctx, layer, n_tokens, positions, k, v);
    for (Lane& lane : lanes_) lane.session->kv().store(ctx, layer, n_tokens, positions, k, v);
  }

  void attend(const ops::Context& ctx, int64_t layer, const ops::AttentionQuery& query) override {
    dense_.attend(ctx, layer, query);
    const bool measuring = measure && query.n_tokens == 1;
    const int64_t row = query.n_heads * dense_.options().head_dim;
    dense_ready_ = false;
    for (Lane& lane : lanes_) {
      KvCache& kv = lane.session->kv();
      // During a prompt only a policy that compresses it may need the queries (SnapKV's observation window);
      // the others would only repeat dense attention.
      if (!measuring && (kv.policy() == nullptr || !kv.policy()->compresses_prefill())) continue;
      out_.resize(static_cast<size_t>(query.n_tokens * row));
      ops::AttentionQuery q = query;
      q.out = out_.data();
      kv.attend(ctx, layer, q);
      if (measuring) compare(lane, layer, query);
    }
  }

 private:
  void compare(Lane& lane, int64_t layer, const ops::AttentionQuery& query) {
    const int64_t d = dense_.options().head_dim;
    const int64_t n_kv = dense_.options().n_kv_heads;
    const int64_t group = query.n_heads / n_kv;
    for (int64_t h = 0; h < query.n_heads; ++h) {
      const float* ref = query.out + h * d;
      const float* got = out_.data() + h * d;
      double diff = 0, norm = 0;
      for (int64_t i = 0; i < d; ++i) {
        const double e = static_cast<double>(got[i]) - ref[i];
        diff += e * e;
        norm += static_cast<double>(ref[i]) * ref[i];
      }
      lane.error.add(layer, h, std::sqrt(diff) / (std::sqrt(norm) + 1e-12));
    }
    KvCache& kv = lane.session->kv();
    AttentionSelector* selector = kv.selector();
    if (!lane.policy_metrics && selector == nullptr) return;
    for (int64_t g = 0; g < n_kv; ++g) {
      const float* q = query.q + g * group * d;
      head_logits(kv, layer, g, q, group, query.scale, method_);
      if (lane.policy_metrics) {
        if (!dense_ready_) {
          dense_heads_.resize(static_cast<size_t>(n_kv));
          for (int64_t x = 0; x < n_kv; ++x)
            head_logits(dense_, layer, x, query.q + x * group * d, group, query.scale,
                        dense_heads_[static_cast<size_t>(x)]);
          dense_ready_ = true;
        }
        const HeadLogits& ref = dense_heads_[static_cast<size_t>(g)];
        const int32_t* positions = kv.positions(layer, g);
        const float* bias = kv.bias(layer, g);
        double kept = 0;
        for (int64_t h = 0; h < group; ++h) {
          const auto hs = static_cast<size_t>(h);
          lane.log_z.add(layer, g * group + h, std::fabs(method_.log_z[hs] - ref.log_z[hs]));
          for (int64_t j = 0; j < method_.n; ++j) {
            if (bias != nullptr && bias[j] != 0.0f) continue;  // merged (Chelsea) or evicted (StreamingLLM)
            const int32_t p = positions[j];
            if (p < 0 || p >= ref.n) fail("fidelity: the dense cache has no position {}", p);
            kept += std::exp(ref.logit[hs][static_cast<size_t>(p)] - ref.log_z[hs]);
          }
        }
        lane.kept_mass.add(layer, g, kept / static_cast<double>(group));
      }
      if (selector != nullptr && selector->select(kv, layer, g, q, group, chosen_))
        compare_selection(lane, layer, g, group, *selector);
    }
  }

  // Top-k recall and mass recall of the entries the selector chose (chosen_) against the exact top |S| of
  // the same head by softmax summed over the group, the forced entries forced in both.
  void compare_selection(Lane& lane, int64_t layer, int64_t g, int64_t group,
                         const AttentionSelector& selector) {
    const int64_t n = method_.n;
    const auto k = static_cast<int64_t>(chosen_.size());
    if (k == 0) return;
    std::vector<double> score(static_cast<size_t>(n), 0.0);
    for (int64_t h = 0; h < group; ++h)
      for (int64_t j = 0; j < n; ++j)
        score[static_cast<size_t>(j)] +=
            std::exp(method_.logit[static_cast<size_t>(h)][static_cast<size_t>(j)] -
                     method_.log_z[static_cast<size_t>(h)]);
    int64_t sink = 0, recent = 1;  // the current token is always read
    if (const auto* sparse = dynamic_cast<const SparseSelector*>(&selector)) {
      sink = sparse->config().sink;
      recent = std::max<int64_t>(recent, sparse->config().recent);
    }
    std::vector<char> in_exact(static_cast<size_t>(n), 0);
    int64_t forced = 0;
    for (int64_t j = 0; j < n; ++j)
      if (j < sink || j >= n - recent) {
        in_exact[static_cast<size_t>(j)] = 1;
        ++forced;
      }
    std::vector<int32_t> rest;
    for (int64_t j = 0; j < n; ++j)
      if (!in_exact[static_cast<size_t>(j)]) rest.push_back(static_cast<int32_t>(j));
    const int64_t take = std::clamp<int64_t>(k - forced, 0, static_cast<int64_t>(rest.size()));
    std::partial_sort(rest.begin(), rest.begin() + take, rest.end(), [&](int32_t a, int32_t b) {
      const double sa = score[static_cast<size_t>(a)], sb = score[static_cast<size_t>(b)];
      return sa != sb ? sa > sb : a < b;
    });
    for (int64_t i = 0; i < take; ++i) in_exact[static_cast<size_t>(rest[static_cast<size_t>(i)])] = 1;
    // S* is not unique where entries tie with its last one: in peaked heads the k-th score is often below
    // what a float holds (1e-37), where the selectors' float softmaxes see zeros. A chosen entry within 1e-6
    // of that score (relative), or within 1e-37, could stand in S* as well, so it counts as a hit.
    const double last = take > 0 ? score[static_cast<size_t>(rest[static_cast<size_t>(take - 1)])] : 0.0;
    const double tie =
        take > 0 ? last - std::max(1e-6 * last, 1e-37) : std::numeric_limits<double>::infinity();
    int64_t hit = 0;
    double mass = 0;
    for (int32_t j : chosen_) {
      hit += in_exact[static_cast<size_t>(j)] || score[static_cast<size_t>(j)] >= tie;
      mass += score[static_cast<size_t>(j)];
    }
    lane.recall.add(layer, g, static_cast<double>(hit) / static_cast<double>(forced + take));
    lane.mass.add(layer, g, mass / static_cast<double>(group));
  }

  KvCache& dense_;
  std::vector<Lane>& lanes_;
  std::vector<float> out_;
  std::vector<int32_t> chosen_;
  HeadLogits method_;
  std::vector<HeadLogits> dense_heads_;  // [n_kv_heads] of the layer being measured, once per attend
  bool dense_ready_ = false;
};

nlohmann::json to_json(const MetricTable& t, bool with_p95) {
  if (!t.measured()) return nullptr;
  nlohmann::json layers = nlohmann::json::array();
  for (size_t l = 0; l < t.layers.size(); ++l) {
    if (t.layers[l].n == 0) {
      layers.push_back(nullptr);
      continue;
    }
    nlohmann::json heads = nlohmann::json::array();
    for (const MetricSummary& h : t.heads[l]) heads.push_back(h.n > 0 ? nlohmann::json(h.mean) : nullptr);
    nlohmann::json layer = {{"mean", t.layers[l].mean}, {"n", t.layers[l].n}, {"heads", heads}};
    if (with_p95) layer["p95"] = t.layers[l].p95;
    layers.push_back(layer);
  }
  return {{"mean_over_layers", t.mean_over_layers}, {"layers", layers}};
}

}  // namespace

bool MetricTable::measured() const {
  return std::any_of(layers.begin(), layers.end(), [](const MetricSummary& s) { return s.n > 0; });
}

nlohmann::json to_json(const FidelityResult& r) {
  nlohmann::json methods = nlohmann::json::array();
  for (const MethodFidelity& m : r.methods)
    methods.push_back({{"method", m.method},
                       {"output_error", to_json(m.output_error, true)},
                       {"topk_recall", to_json(m.topk_recall, false)},
                       {"mass_recall", to_json(m.mass_recall, false)},
                       {"kept_mass", to_json(m.kept_mass, false)},
                       {"log_z_error", to_json(m.log_z_error, true)}});
  return {{"n_text_tokens", r.n_text_tokens},
          {"n_windows", r.n_windows},
          {"ctx", r.ctx},
          {"steps", r.steps},
          {"n_layer", r.n_layer},
          {"n_head", r.n_head},
          {"n_head_kv", r.n_head_kv},
          {"methods", methods}};
}

FidelityResult run_fidelity(std::shared_ptr<const ModelSource> source, const std::vector<int32_t>& tokens,
                            const MethodRegistry& registry, const std::vector<MethodSpec>& methods,
                            const FidelityOptions& o,
                            const std::function<void(int64_t, int64_t)>& on_progress) {
  if (o.steps < 1 || o.ctx < o.steps + 2)
    fail("--steps: expected 1 to ctx - 2 decode steps per window (--ctx {}), got {}", o.ctx, o.steps);
  if (o.max_windows < 0) fail("--windows: expected a count >= 0 (0: all), got {}", o.max_windows);
  if (methods.empty()) fail("no method to evaluate");
  const auto n_text = static_cast<int64_t>(tokens.size());
  int64_t n_windows = n_text / o.ctx;
  if (n_windows == 0)
    fail("the text has {} tokens, fewer than one window of {} (lower --ctx or give a longer text)", n_text,
         o.ctx);
  if (o.max_windows > 0) n_windows = std::min(n_windows, o.max_windows);

  const std::unique_ptr<Model> model = Model::create(source);
  const ModelConfig& c = model->config();
  SessionOptions so;
  so.n_ctx = o.ctx;
  so.n_threads = 1;  // the lanes' own pools stay idle: all work runs on `pool`
  so.n_batch = o.n_batch;
  so.kv_type = o.kv_type;
  std::vector<Lane> lanes;
  for (const MethodSpec& m : methods) {
    if (registry.create(m)->selects_context())
      fail(
          "method '{}' chooses what the model reads, so its attention cannot be compared with dense "
          "attention over the same tokens (use it with `eval run`)",
          m.text);
    lanes.push_back({m, std::make_unique<Session>(source, so), false, Samples(c.n_layer, c.n_head),
                     Samples(c.n_layer, c.n_head_kv), Samples(c.n_layer, c.n_head_kv),
                     Samples(c.n_layer, c.n_head_kv), Samples(c.n_layer, c.n_head)});
  }
  KvCacheOptions ko = lanes.front().session->kv().options();
  KvCache dense(ko);
  ThreadPool pool(o.n_threads);
  const ops::Context ctx{pool, {}, false};
  FidelityMemory memory(dense, lanes);

  const int64_t n_prefill = o.ctx - o.steps;
  const int64_t total = n_windows * o.steps;
  int64_t done = 0;
  std::vector<float> logits(static_cast<size_t>(c.n_vocab));
  std::vector<int32_t> positions(static_cast<size_t>(o.ctx));
  std::iota(positions.begin(), positions.end(), 0);
  for (int64_t w = 0; w < n_windows; ++w) {
    std::vector<int32_t> window(tokens.begin() + w * o.ctx, tokens.begin() + (w + 1) * o.ctx);
    if (o.bos_id >= 0) window[0] = o.bos_id;
    dense.clear();
    for (Lane& lane : lanes) {
      lane.session->clear();
      registry.create(lane.spec)->prepare(*lane.session);
      KvPolicy* policy = lane.session->kv().policy();
      lane.policy_metrics = policy != nullptr && policy->name() != "full";
      if (policy == nullptr) continue;
      policy->set_generation_budget(o.steps);  // chelsea.md §2's Γ: the tokens decoded after the prompt
      if (policy->compresses_prefill()) policy->begin_prefill(lane.session->kv(), n_prefill);
    }
    // The prompt layer by layer, as Session::eval runs it under a compressing policy.
    memory.measure = false;
    const Batch prompt{window.data(), positions.data(), n_prefill, false};
    model->forward_layer_major(ctx, prompt, o.n_batch, memory, logits.data(), {}, [&](int64_t layer) {
      for (Lane& lane : lanes) {
        KvPolicy* policy = lane.session->kv().policy();
        if (policy != nullptr && policy->compresses_prefill())
          policy->after_prefill(ctx, lane.session->kv(), layer);
      }
    });
    for (Lane& lane : lanes) {
      KvPolicy* policy = lane.session->kv().policy();
      if (policy != nullptr && policy->compresses_prefill()) policy->end_prefill(lane.session->kv());
    }
    memory.measure = true;
    for (int64_t t = n_prefill; t < o.ctx; ++t) {
      const Batch step{window.data() + t, positions.data() + t, 1, false};
      model->forward(ctx, step, memory, logits.data());
      if (on_progress) on_progress(++done, total);
    }
  }

  FidelityResult r;
  r.n_text_tokens = n_text;
  r.n_windows = n_windows;
  r.ctx = o.ctx;
  r.steps = o.steps;
  r.n_layer = c.n_layer;
  r.n_head = c.n_head;
  r.n_head_kv = c.n_head_kv;
  for (const Lane& lane : lanes)
    r.methods.push_back({lane.spec.text, lane.error.table(), lane.recall.table(), lane.mass.table(),
                         lane.kept_mass.table(), lane.log_z.table()});
  return r;
}

}  // namespace ariadne::eval
