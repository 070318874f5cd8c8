#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "core/error.h"
#include "runtime/session.h"

namespace ariadne::eval {

namespace {

// log-softmax of one row in double.
void log_softmax(std::span<const float> logits, std::vector<double>& out) {
  out.resize(logits.size());
  double mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, static_cast<double>(v));
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  const double lse = mx + std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - lse;
}

size_t argmax(const std::vector<double>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

struct Lane {
  MethodSpec spec;
  std::unique_ptr<Session> session;
  std::vector<float> logits;
  double nll_total = 0;
  int64_t n_total = 0;
  std::vector<double> kl;  // every scored position
  int64_t agree = 0;
  double abs_dp = 0;
};

}  // namespace

KlStats kl_stats(std::vector<double> kl, int64_t agree, double abs_dp_sum) {
  KlStats s;
  s.n = static_cast<int64_t>(kl.size());
  if (kl.empty()) return s;
  std::sort(kl.begin(), kl.end());
  double sum = 0;
  for (double v : kl) sum += v;
  const auto n = static_cast<double>(kl.size());
  s.mean = sum / n;
  s.median = kl.size() % 2 == 1 ? kl[kl.size() / 2] : 0.5 * (kl[kl.size() / 2 - 1] + kl[kl.size() / 2]);
  s.p99 = kl[std::min(kl.size() - 1, static_cast<size_t>(std::ceil(0.99 * n)) - 1)];
  s.max = kl.back();
  s.top1_agreement = static_cast<double>(agree) / n;
  s.mean_abs_dp_top = abs_dp_sum / n;
  return s;
}

PerplexityResult run_perplexity(std::shared_ptr<const ModelSource> source, const std::vector<int32_t>& tokens,
                                const MethodRegistry& registry, const std::vector<MethodSpec>& methods,
                                const PerplexityOptions& o,
                                const std::function<void(int64_t, int64_t)>& on_progress) {
  if (o.ctx < 2) fail("the window (--ctx) must hold at least 2 tokens, got {}", o.ctx);
  if (o.scored < 1 || o.scored >= o.ctx)
    fail("the scored tokens per window (--scored) must be in [1, {}) for --ctx {}, got {}", o.ctx, o.ctx,
         o.scored);
  if (methods.empty()) fail("no method to evaluate");
  const auto n_text = static_cast<int64_t>(tokens.size());
  int64_t n_windows = n_text / o.ctx;
  if (n_windows == 0)
    fail("the text has {} tokens, fewer than one window of {} (lower --ctx or give a longer text)", n_text,
         o.ctx);
  if (o.max_windows > 0) n_windows = std::min(n_windows, o.max_windows);

  SessionOptions so;
  so.n_ctx = o.ctx;
  so.n_threads = o.n_threads;
  so.n_batch = o.n_batch;
  so.kv_type = o.kv_type;
  Session dense(source, so);
  const MethodSpec full = registry.parse("full");
  std::vector<Lane> lanes;
  for (const MethodSpec& m : methods) {
    if (registry.create(m)->selects_context())
      fail(
          "method '{}' chooses what the model reads from a question, and perplexity asks none (use it with "
          "`eval run`)",
          m.text);
    Lane lane;
    lane.spec = m;
    lane.session = std::make_unique<Session>(source, so);
    lanes.push_back(std::move(lane));
  }

  PerplexityResult result;
  result.n_text_tokens = n_text;
  result.n_windows = n_windows;
  result.ctx = o.ctx;
  result.scored = o.scored;
  double dense_nll = 0;
  const int64_t total = n_windows * o.scored;
  int64_t done = 0;
  std::vector<double> lp, lq;
  for (int64_t w = 0; w < n_windows; ++w) {
    const int64_t start = w * o.ctx;
    std::vector<int32_t> window(tokens.begin() + start, tokens.begin() + start + o.ctx);
    if (o.bos_id >= 0) window[0] = o.bos_id;
    const int64_t n_prefill = o.ctx - o.scored;
    const std::span<const int32_t> prefix(window.data(), static_cast<size_t>(n_prefill));
    dense.clear();
    registry.create(full)->prepare(dense);
    std::vector<float> dense_logits = dense.eval(prefix, false);
    std::vector<double> window_nll(lanes.size(), 0.0), window_kl(lanes.size(), 0.0);
    std::vector<int64_t> window_agree(lanes.size(), 0);
    for (Lane& lane : lanes) {
      lane.session->clear();
      registry.create(lane.spec)->prepare(*lane.session);
      // A KV policy's budget counts the tokens decoded after the prefix (chelsea.md §2's Γ).
      if (KvPolicy* policy = lane.session->kv().policy()) policy->set_generation_budget(o.scored);
      lane.logits = lane.session->eval(prefix, false);
    }
    for (int64_t t = 0; t < o.scored; ++t) {
      const int32_t target = window[static_cast<size_t>(n_prefill + t)];
      log_softmax(dense_logits, lp);
      const size_t top = argmax(lp);
      dense_nll -= lp[static_cast<size_t>(target)];
      for (size_t i = 0; i < lanes.size(); ++i) {
        Lane& lane = lanes[i];
        log_softmax(lane.logits, lq);
        double kl = 0;
        for (size_t v = 0; v < lp.size(); ++v) {
          const double p = std::exp(lp[v]);
          if (p > 0) kl += p * (lp[v] - lq[v]);
        }
        kl = std::max(0.0, kl);  // rounding can leave -1e-17 where the distributions agree
        lane.kl.push_back(kl);
        const bool agree = argmax(lq) == top;
        lane.agree += agree;
        window_agree[i] += agree;
        lane.abs_dp += std::fabs(std::exp(lp[top]) - std::exp(lq[top]));
        lane.nll_total -= lq[static_cast<size_t>(target)];
        ++lane.n_total;
        window_nll[i] -= lq[static_cast<size_t>(target)];
        window_kl[i] += kl;
      }
      // Teacher forcing through the decode path: one token at a time.
      if (t + 1 < o.scored) {
        const std::span<const int32_t> one(&window[static_cast<size_t>(n_prefill + t)], 1);
        dense_logits = dense.eval(one, false);
        for (Lane& lane : lanes) lane.logits = lane.session->eval(one, false);
      }
      if (on_progress) on_progress(++done, total);
    }
    for (size_t i = 0; i < lanes.size(); ++i) {
      WindowResult wr;
      wr.window = w;
      wr.start = start;
      wr.method = lanes[i].spec.text;
      wr.nll_mean = window_nll[i] / static_cast<double>(o.scored);
      wr.ppl = std::exp(wr.nll_mean);
      wr.kl_mean = window_kl[i] / static_cast<double>(o.scored);
      wr.top1_agreement = static_cast<double>(window_agree[i]) / static_cast<double>(o.scored);
      result.windows.push_back(wr);
    }
  }
  result.dense_ppl = std::exp(dense_nll / static_cast<double>(total));
  for (Lane& lane : lanes) {
    MethodPerplexity m;
    m.method = lane.spec.text;
    m.ppl = std::exp(lane.nll_total / static_cast<double>(lane.n_total));
    m.delta_ppl = m.ppl - result.dense_ppl;
    m.kl = kl_stats(std::move(lane.kl), lane.agree, lane.abs_dp);
    result.methods.push_back(m);
  }
  return result;
}

nlohmann::json to_json(const PerplexityResult& r) {
  nlohmann::json methods = nlohmann::json::array(), windows = nlohmann::json::array();
  for (const MethodPerplexity& m : r.methods)
    methods.push_back({{"method", m.method},
                       {"ppl", m.ppl},
                       {"delta_ppl", m.delta_ppl},
                       {"kl_mean", m.kl.mean},
                       {"kl_median", m.kl.median},
                       {"kl_p99", m.kl.p99},
                       {"kl_max", m.kl.max},
                       {"top1_agreement", m.kl.top1_agreement},
                       {"mean_abs_dp_top", m.kl.mean_abs_dp_top},
                       {"n_scored", m.kl.n}});
  for (const WindowResult& w : r.windows)
    windows.push_back({{"window", w.window},
                       {"start", w.start},
                       {"method", w.method},
                       {"nll_mean", w.nll_mean},
                       {"ppl", w.ppl},
                       {"kl_mean", w.kl_mean},
                       {"top1_agreement", w.top1_agreement}});
  return {{"n_text_tokens", r.n_text_tokens},
          {"n_windows", r.n_windows},
          {"ctx", r.ctx},
          {"scored", r.scored},
          {"dense_ppl", r.dense_ppl},
          {"methods", methods},
          {"windows", windows}};
}

}  // namespace ariadne::eval
