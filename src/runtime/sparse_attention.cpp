#include "runtime/sparse_attention.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/hamming.h"
#include "kernels/cpu/quants.h"
#include "kernels/cpu/topk.h"

namespace ariadne {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Entries (or pages) one scoring work item covers: large enough that handing it out costs nothing next to
// the work, small enough that a head of a long context splits over every thread.
constexpr int64_t kScoreChunk = 4096;
// Below this many entries over a layer's heads a phase runs on the calling thread: waking the pool would
// cost more than the work (a decode step's new key, a short context).
constexpr int64_t kSerialEntries = 8192;

// fn(begin, end) over [0, n), on the pool when the work (in entries) is worth it.
void maybe_parallel(ThreadPool& pool, int64_t n, int64_t work,
                    const std::function<void(int64_t, int64_t)>& fn) {
  if (work < kSerialEntries || pool.size() == 1) {
    fn(0, n);
  } else {
    pool.parallel_for(n, fn);
  }
}

// Keys j0..j1-1 of one head as f32, [j1 - j0][head_dim].
void load_keys(const KvCache& cache, int64_t layer, int64_t g, int64_t j0, int64_t j1, float* out) {
  const int64_t d = cache.options().head_dim;
  const cpu::RowKernels& kernels = cpu::row_kernels(cache.options().type);
  for (int64_t j = j0; j < j1; ++j) kernels.dequantize(cache.key_row(layer, g, j), out + (j - j0) * d, d);
}

std::optional<double> parse_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string topk_text(double topk) {
  if (topk == 0) return "min(n, max(512, n/64))";
  if (topk > 1) return fmt::format("{} entries", static_cast<int64_t>(topk));
  const double inv = 1.0 / topk;
  if (std::abs(inv - std::round(inv)) < 1e-9) return fmt::format("1/{} of the entries", std::llround(inv));
  return fmt::format("{} of the entries", topk);
}

// ---- hata and hash-random --------------------------------------------------------------------------------

class HashSelector : public SparseSelector {
 public:
  HashSelector(SparseAttentionConfig config, const ModelConfig& model, HataWeights weights)
      : SparseSelector(std::move(config), model), weights_(std::move(weights)) {
    score_mode_ = config_.score.value_or(weights_.score);
    words_ = weights_.rbits / 64;
    codes_.resize(static_cast<size_t>(model_.n_layer * model_.n_head_kv));
  }

  std::string_view name() const override { return config_.method; }

  void after_store(const ops::Context& ctx, const KvCache& cache, int64_t layer, int64_t n_new) override {
    if (hashed(layer)) catch_up(ctx, cache, layer);
  }

  void after_compact(const KvCache& cache, int64_t layer, int64_t g, std::span<const int64_t> keep) override {
    Codes& c = codes(layer, g);
    int64_t out = 0;
    for (const int64_t j : keep) {
      if (j >= c.n) break;  // entries never encoded: catch_up encodes them later
      if (j != out) {
        std::copy_n(c.code.begin() + j * words_, words_, c.code.begin() + out * words_);
        c.norm[static_cast<size_t>(out)] = c.norm[static_cast<size_t>(j)];
      }
      ++out;
    }
    c.n = out;
    c.code.resize(static_cast<size_t>(out * words_));
    c.norm.resize(static_cast<size_t>(out));
    c.code.shrink_to_fit();
    c.norm.shrink_to_fit();
  }

  void after_rewrite(const KvCache& cache, int64_t layer, int64_t g, int64_t j) override {
    Codes& c = codes(layer, g);
    if (j < c.n) encode_keys(cache, layer, g, j, j + 1, c);
  }

  void reset() override {
    SparseSelector::reset();
    for (Codes& c : codes_) c = Codes{};
  }

  uint64_t bytes() const override {
    uint64_t b = 0;
    for (const Codes& c : codes_)
      b += c.code.capacity() * sizeof(uint64_t) + c.norm.capacity() * sizeof(uint16_t);
    return b;
  }

  std::string describe() const override {
    std::string s = SparseSelector::describe();
    s += fmt::format(", r = {} bits, {} scores", weights_.rbits, hata_score_name(score_mode_));
    if (config_.method == "hata") s += ", weights " + config_.sidecar;
    return s;
  }

 protected:
  void prepare(const ops::Context& ctx, const KvCache& cache, int64_t layer,
               const ops::AttentionQuery& query) override {
    catch_up(ctx, cache, layer);
    // §2.2: every query head is encoded with its group's W.
    const int64_t d = model_.head_dim, group = model_.n_head / model_.n_head_kv;
    qcodes_.resize(static_cast<size_t>(model_.n_head * words_));
    proj_.resize(static_cast<size_t>(weights_.rbits));
    const float* w = weights_.layer(layer);
    for (int64_t h = 0; h < model_.n_head; ++h)
      cpu::hash_encode(query.q + h * d, 1, d, w + (h / group) * d * weights_.rbits, weights_.rbits,
                       qcodes_.data() + h * words_, proj_.data());
  }

  void size_scores(HeadWork& w, int64_t units) const override {
    w.use_u32 = score_mode_ == HataScore::Hamming;
    w.max_score = static_cast<uint32_t>(model_.n_head / model_.n_head_kv * weights_.rbits);
    SparseSelector::size_scores(w, units);
  }

  void score(const KvCache& cache, int64_t layer, int64_t g, const float* q, int64_t group, int64_t u0,
             int64_t u1, HeadWork& w) const override {
    const Codes& c = codes_[static_cast<size_t>(layer * model_.n_head_kv + g)];
    const uint64_t* qc = qcodes_.data() + g * group * words_;
    if (score_mode_ == HataScore::Norm) {
      // r (G - 2 sum_h ham_h / r) |k|, the spec's score times r: 1 - 2 ham / r tracks cos(q_h, k), so this
      // tracks sum_h q_h.k / |q_h|; one pass over codes and norms.
      cpu::hamming_group_weighted(qc, group, c.code.data() + u0 * words_, c.norm.data() + u0, u1 - u0, words_,
                                  static_cast<int32_t>(group * weights_.rbits), w.score.data() + u0);
    } else {
      cpu::hamming_group(qc, group, c.code.data() + u0 * words_, u1 - u0, words_, w.ham.data() + u0);
    }
  }

 private:
  struct Codes {
    std::vector<uint64_t> code;  // [n][words] key codes
    std::vector<uint16_t> norm;  // [n] |k| as f16 (spec §2.1 allows it; clamped to the f16 range)
    int64_t n = 0;               // entries encoded (the head's first n)
  };
  Codes& codes(int64_t layer, int64_t g) { return codes_[static_cast<size_t>(layer * model_.n_head_kv + g)]; }
  bool hashed(int64_t layer) const { return !is_dense_layer(layer) && weights_.layer(layer) != nullptr; }

  // Encodes entries [j0, j1) of head g into c (which holds at least j1 slots, or exactly j0 to grow).
  void encode_keys(const KvCache& cache, int64_t layer, int64_t g, int64_t j0, int64_t j1, Codes& c) const {
    const int64_t d = model_.head_dim, r = weights_.rbits;
    if (static_cast<int64_t>(c.norm.size()) < j1) {
      // Room grows to exactly what a prompt needs, or by an eighth for a step's entry (not the vector's
      // doubling): what the codes hold stays within 12.5% of what they use, at O(1) amortised per step.
      if (static_cast<int64_t>(c.norm.capacity()) < j1) {
        const auto cap = static_cast<int64_t>(c.norm.capacity());
        const auto room = static_cast<size_t>(std::max<int64_t>(j1, cap + cap / 8));
        c.code.reserve(room * static_cast<size_t>(words_));
        c.norm.reserve(room);
      }
      c.code.resize(static_cast<size_t>(j1 * words_));
      c.norm.resize(static_cast<size_t>(j1));
    }
    const float* w = weights_.layer(layer) + g * d * r;
    std::vector<float> keys(static_cast<size_t>(std::min<int64_t>(j1 - j0, 256) * d)),
        proj(static_cast<size_t>(r));
    for (int64_t b0 = j0; b0 < j1; b0 += 256) {
      const int64_t b1 = std::min(j1, b0 + 256);
      load_keys(cache, layer, g, b0, b1, keys.data());
      cpu::hash_encode(keys.data(), b1 - b0, d, w, r, c.code.data() + b0 * words_, proj.data());
      for (int64_t j = b0; j < b1; ++j) {
        const float* k = keys.data() + (j - b0) * d;
        double s = 0;
        for (int64_t e = 0; e < d; ++e) s += static_cast<double>(k[e]) * k[e];
        c.norm[static_cast<size_t>(j)] = f32_to_f16(static_cast<float>(std::min(std::sqrt(s), 65504.0)));
      }
    }
  }

  // Encodes every entry of the layer's heads not encoded yet (keys as they enter the cache).
  void catch_up(const ops::Context& ctx, const KvCache& cache, int64_t layer) {
    int64_t missing = 0;
    for (int64_t g = 0; g < model_.n_head_kv; ++g)
      missing += std::max<int64_t>(0, cache.size(layer, g) - codes(layer, g).n);
    if (missing == 0) return;
    // Encoding costs head_dim x r per entry, so even a few hundred entries are worth the threads.
    maybe_parallel(ctx.pool, model_.n_head_kv, missing * 64, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        Codes& c = codes(layer, g);
        const int64_t n = cache.size(layer, g);
        if (c.n >= n) continue;
        encode_keys(cache, layer, g, c.n, n, c);
        c.n = n;
      }
    });
  }

  HataWeights weights_;
  HataScore score_mode_ = HataScore::Norm;
  int64_t words_ = 2;
  std::vector<Codes> codes_;      // [n_layer][n_kv_heads]
  std::vector<uint64_t> qcodes_;  // [n_head][words] the step's query codes
  std::vector<float> proj_;
};

// ---- exact top-k (oracle) --------------------------------------------------------------------------------

class ExactTopkSelector : public SparseSelector {
 public:
  using SparseSelector::SparseSelector;
  std::string_view name() const override { return "exact-topk"; }

 protected:
  void prepare(const ops::Context&, const KvCache&, int64_t, const ops::AttentionQuery& query) override {
    scale_ = query.scale;
  }

  void size_scores(HeadWork& w, int64_t units) const override {
    const int64_t group = model_.n_head / model_.n_head_kv;
    w.use_u32 = false;
    w.aux.resize(static_cast<size_t>(group * units));  // logits [group][n]
    w.score.resize(static_cast<size_t>(units));
  }

  // Logits scale * q_h . k_i + bias_i (what the attention kernel computes), for every query head.
  void score(const KvCache& cache, int64_t layer, int64_t g, const float* q, int64_t group, int64_t u0,
             int64_t u1, HeadWork& w) const override {
    const int64_t d = model_.head_dim;
    const float* bias = cache.bias(layer, g);
    std::vector<float> k(static_cast<size_t>(d));
    for (int64_t i = u0; i < u1; ++i) {
      load_keys(cache, layer, g, i, i + 1, k.data());
      for (int64_t h = 0; h < group; ++h) {
        const float z = cpu::dot_f32(q + h * d, k.data(), d) * scale_ + (bias != nullptr ? bias[i] : 0.0f);
        w.aux[static_cast<size_t>(h * w.n + i)] = z;
      }
    }
  }

  // Score of entry i: sum over the group's heads of softmax_h(i) (hata.md §5, the oracle).
  void choose(const KvCache& cache, int64_t layer, int64_t g, const float* q, int64_t group,
              HeadWork& w) const override {
    std::fill(w.score.begin(), w.score.end(), 0.0f);
    for (int64_t h = 0; h < group; ++h) {
      const float* z = w.aux.data() + h * w.n;
      const float m = *std::max_element(z, z + w.n);
      double sum = 0;
      for (int64_t i = 0; i < w.n; ++i) sum += std::exp(static_cast<double>(z[i] - m));
      const double inv = 1.0 / sum;
      for (int64_t i = 0; i < w.n; ++i)
        w.score[static_cast<size_t>(i)] += static_cast<float>(std::exp(static_cast<double>(z[i] - m)) * inv);
    }
    SparseSelector::choose(cache, layer, g, q, group, w);
  }

 private:
  float scale_ = 1.0f;
};

// ---- quest -----------------------------------------------------------------------------------------------

class QuestSelector : public SparseSelector {
 public:
  QuestSelector(SparseAttentionConfig config, const ModelConfig& model)
      : SparseSelector(std::move(config), model),
        pages_(static_cast<size_t>(model.n_layer * model.n_head_kv)) {}

  std::string_view name() const override { return "quest"; }

  void after_store(const ops::Context&, const KvCache& cache, int64_t layer, int64_t) override {
    if (is_dense_layer(layer)) return;
    for (int64_t g = 0; g < model_.n_head_kv; ++g) update(cache, layer, g);
  }
  // Page bounds are rebuilt from the keys at the next step (cheap next to the compression that moved them).
  void after_compact(const KvCache&, int64_t layer, int64_t g, std::span<const int64_t>) override {
    pages(layer, g).stale = true;
  }
  void after_rewrite(const KvCache&, int64_t layer, int64_t g, int64_t) override {
    pages(layer, g).stale = true;
  }
  void reset() override {
    SparseSelector::reset();
    for (Pages& p : pages_) p = Pages{};
  }
  uint64_t bytes() const override {
    uint64_t b = 0;
    for (const Pages& p : pages_) b += (p.lo.capacity() + p.hi.capacity()) * sizeof(float);
    return b;
  }
  std::string describe() const override {
    return SparseSelector::describe() + fmt::format(", pages of {} entries", config_.page);
  }

 protected:
  void prepare(const ops::Context& ctx, const KvCache& cache, int64_t layer,
               const ops::AttentionQuery&) override {
    int64_t missing = 0;
    for (int64_t g = 0; g < model_.n_head_kv; ++g) {
      const Pages& p = pages_[static_cast<size_t>(layer * model_.n_head_kv + g)];
      missing += p.stale ? cache.size(layer, g) : cache.size(layer, g) - p.n;
    }
    maybe_parallel(ctx.pool, model_.n_head_kv, missing, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) update(cache, layer, g);
    });
  }

  int64_t score_units(int64_t n) const override { return (n + config_.page - 1) / config_.page; }

  void size_scores(HeadWork& w, int64_t units) const override {
    w.use_u32 = false;
    w.score.resize(static_cast<size_t>(units));
  }

  // Quest's upper bound of q . k over a page, summed over the group (hata.md §5).
  void score(const KvCache& cache, int64_t layer, int64_t g, const float* q, int64_t group, int64_t u0,
             int64_t u1, HeadWork& w) const override {
    const Pages& p = pages_[static_cast<size_t>(layer * model_.n_head_kv + g)];
    const int64_t d = model_.head_dim;
    for (int64_t page = u0; page < u1; ++page) {
      const float* lo = p.lo.data() + page * d;
      const float* hi = p.hi.data() + page * d;
      float s = 0;
      for (int64_t h = 0; h < group; ++h)
        for (int64_t e = 0; e < d; ++e) {
          const float qe = q[h * d + e];
          s += std::max(qe * lo[e], qe * hi[e]);
        }
      w.score[static_cast<size_t>(page)] = s;
    }
  }

  // The best ceil(k / page) pages plus the current partial page; pages holding forced entries are forced.
  void choose(const KvCache&, int64_t layer, int64_t g, const float*, int64_t, HeadWork& w) const override {
    const int64_t page = config_.page;
    const int64_t n_pages = score_units(w.n);
    const int64_t recent = std::max<int64_t>(1, config_.recent);
    const int64_t sink_pages = (std::min(config_.sink, w.n) + page - 1) / page;
    const int64_t recent_pages = n_pages - std::max<int64_t>(0, w.n - recent) / page;
    const int64_t budget = (w.k + page - 1) / page + (w.n % page != 0 ? 1 : 0);
    force_followed(layer, g, w, page);
    std::vector<int32_t> chosen(static_cast<size_t>(n_pages));
    const int64_t m = cpu::topk_largest_f32(w.score.data(), n_pages, sink_pages, recent_pages, budget,
                                            chosen.data(), w.scratch);
    w.indices.clear();
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = chosen[static_cast<size_t>(i)] * page;
           j < std::min(w.n, (chosen[static_cast<size_t>(i)] + 1) * page); ++j)
        w.indices.push_back(static_cast<int32_t>(j));
  }

 private:
  struct Pages {
    std::vector<float> lo, hi;  // [n_pages][head_dim] channel-wise min and max of the page's keys
    int64_t n = 0;              // entries folded in
    bool stale = false;         // the head was compacted or rewritten: rebuild
  };
  Pages& pages(int64_t layer, int64_t g) { return pages_[static_cast<size_t>(layer * model_.n_head_kv + g)]; }

  void update(const KvCache& cache, int64_t layer, int64_t g) {
    Pages& p = pages(layer, g);
    const int64_t d = model_.head_dim, page = config_.page;
    if (p.stale) p = Pages{};
    const int64_t n = cache.size(layer, g);
    std::vector<float> k(static_cast<size_t>(d));
    for (int64_t j = p.n; j < n; ++j) {
      if (j % page == 0) {
        p.lo.resize(p.lo.size() + static_cast<size_t>(d), std::numeric_limits<float>::infinity());
        p.hi.resize(p.hi.size() + static_cast<size_t>(d), -std::numeric_limits<float>::infinity());
      }
      load_keys(cache, layer, g, j, j + 1, k.data());
      float* lo = p.lo.data() + (j / page) * d;
      float* hi = p.hi.data() + (j / page) * d;
      for (int64_t e = 0; e < d; ++e) {
        lo[e] = std::min(lo[e], k[static_cast<size_t>(e)]);
        hi[e] = std::max(hi[e], k[static_cast<size_t>(e)]);
      }
    }
    p.n = n;
  }

  std::vector<Pages> pages_;  // [n_layer][n_kv_heads]
};

}  // namespace

const std::vector<std::string>& sparse_attention_methods() {
  static const std::vector<std::string> names{"hata", "exact-topk", "quest", "hash-random"};
  return names;
}

double parse_topk(std::string_view text, std::string_view flag) {
  const std::string s(text);
  const size_t slash = s.find('/');
  std::optional<double> v;
  if (slash == std::string::npos) {
    v = parse_number(s);
  } else {
    const auto p = parse_number(s.substr(0, slash));
    const auto q = parse_number(s.substr(slash + 1));
    if (p && q && *q != 0) v = *p / *q;
  }
  if (!v || *v <= 0 || (*v > 1 && *v != std::floor(*v)))
    fail(
        "{}: '{}' is neither a fraction in (0, 1] of each head's entries (e.g. 1/16) nor a whole number of "
        "entries (e.g. 512)",
        flag, text);
  return *v;
}

std::vector<int32_t> parse_layer_list(std::string_view text, std::string_view flag) {
  std::vector<int32_t> out;
  if (text.empty() || text == "none") return out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string item(text.substr(pos, end - pos));
    const auto v = parse_number(item);
    if (!v || *v < 0 || *v != std::floor(*v) || *v > 1e6)
      fail("{}: '{}' is not a layer number (expected layers >= 0 separated by commas, e.g. 0,1, or none)",
           flag, item);
    out.push_back(static_cast<int32_t>(*v));
    pos = end + 1;
  }
  return out;
}

bool parse_follow(std::string_view text, std::string_view flag) {
  if (text == "on") return true;
  if (text == "off") return false;
  fail("{}: '{}' is neither on nor off", flag, text);
}

void validate_sparse_attention(const SparseAttentionConfig& c) {
  const auto& names = sparse_attention_methods();
  if (c.method != "dense" && std::find(names.begin(), names.end(), c.method) == names.end())
    fail("--attn: unknown attention '{}' (expected dense, {})", c.method, fmt::join(names, ", "));
  if (!std::isfinite(c.topk) || c.topk < 0 || c.topk > INT32_MAX ||
      (c.topk > 1 && c.topk != std::floor(c.topk)))
    fail("--topk: {} is neither a fraction in (0, 1] nor a whole number of entries", c.topk);
  for (const int32_t l : c.dense_layers)
    if (l < 0) fail("--attn-dense-layers: layer {} is negative", l);
  if (c.sink < 0) fail("--attn-sink: expected a count >= 0, got {}", c.sink);
  if (c.recent < 0) fail("--attn-recent: expected a count >= 0, got {}", c.recent);
  if (c.rbits < 64 || c.rbits > 4096 || c.rbits % 64 != 0)
    fail("--hash-bits: expected a multiple of 64 in [64, 4096], got {}", c.rbits);
  if (c.page < 1) fail("--quest-page: expected a page size >= 1, got {}", c.page);
}

int64_t topk_entries(double topk, int64_t n) {
  if (n <= 0) return 0;
  int64_t k = 0;
  if (topk == 0) {
    k = std::max<int64_t>(512, (n + 63) / 64);  // hata.md §2 default
  } else if (topk <= 1) {
    // ceil, with a margin so that 1/3 * 3 stays 1
    k = static_cast<int64_t>(std::ceil(topk * static_cast<double>(n) - 1e-9));
  } else {
    k = static_cast<int64_t>(topk);
  }
  return std::clamp<int64_t>(k, 1, n);
}

SparseSelector::SparseSelector(SparseAttentionConfig config, const ModelConfig& model)
    : config_(std::move(config)),
      model_(model),
      followed_(static_cast<size_t>(std::max<int64_t>(0, model.n_layer * model.n_head_kv))) {
  validate_sparse_attention(config_);
  ARIADNE_CHECK(model_.n_head_kv > 0 && model_.n_head % model_.n_head_kv == 0,
                "sparse attention: head counts");
}

bool SparseSelector::is_dense_layer(int64_t layer) const {
  return std::find(config_.dense_layers.begin(), config_.dense_layers.end(), layer) !=
         config_.dense_layers.end();
}

std::string SparseSelector::describe() const {
  std::string s = fmt::format("{}: top-k {} per KV head", config_.method, topk_text(config_.topk));
  if (!config_.dense_layers.empty())
    s += fmt::format(", dense layers {}", fmt::join(config_.dense_layers, ","));
  if (config_.sink > 0 || config_.recent > 0)
    s += fmt::format(", forced {} sink + {} recent", config_.sink, config_.recent);
  if (config_.follow) s += ", following the most attended entries";
  return s;
}

void SparseSelector::reset() {
  for (Followed& f : followed_) f = Followed{};
}

bool SparseSelector::wants_argmax(int64_t layer) const {
  return config_.follow && !is_dense_layer(layer);
}

void SparseSelector::after_attend(const KvCache& cache, int64_t layer, std::span<const int32_t> argmax) {
  const int64_t n_kv = model_.n_head_kv;
  if (layer < 0 || layer >= model_.n_layer || static_cast<int64_t>(argmax.size()) % n_kv != 0) return;
  const int64_t group = static_cast<int64_t>(argmax.size()) / n_kv;
  for (int64_t g = 0; g < n_kv; ++g) {
    Followed& f = followed_[static_cast<size_t>(layer * n_kv + g)];
    f.next.clear();
    f.n = cache.size(layer, g);
    for (int64_t h = 0; h < group; ++h) {
      const int32_t j = argmax[static_cast<size_t>(g * group + h)];
      if (j >= 0 && std::find(f.next.begin(), f.next.end(), j + 1) == f.next.end()) f.next.push_back(j + 1);
    }
  }
}

void SparseSelector::force_followed(int64_t layer, int64_t g, HeadWork& w, int64_t unit_size) const {
  if (!config_.follow) return;
  const Followed& f = followed_[static_cast<size_t>(layer * model_.n_head_kv + g)];
  if (f.n < 0 || f.n + 1 != w.n) return;
  for (const int32_t j : f.next) {
    if (j >= w.n) continue;
    const auto unit = static_cast<size_t>(j / unit_size);
    if (w.use_u32) {
      if (unit < w.ham.size()) w.ham[unit] = 0;
    } else if (unit < w.score.size()) {
      w.score[unit] = std::numeric_limits<float>::infinity();
    }
  }
}

void SparseSelector::size_scores(HeadWork& w, int64_t units) const {
  if (w.use_u32) {
    w.ham.resize(static_cast<size_t>(units));
  } else {
    w.score.resize(static_cast<size_t>(units));
  }
}

void SparseSelector::choose(const KvCache&, int64_t layer, int64_t g, const float*, int64_t,
                            HeadWork& w) const {
  force_followed(layer, g, w, 1);
  const int64_t recent = std::max<int64_t>(1, config_.recent);  // the current token is always read
  w.indices.resize(static_cast<size_t>(w.n));
  const int64_t m = w.use_u32 ? cpu::topk_smallest_u32(w.ham.data(), w.n, w.max_score, config_.sink, recent,
                                                       w.k, w.indices.data(), w.hist)
                              : cpu::topk_largest_f32(w.score.data(), w.n, config_.sink, recent, w.k,
                                                      w.indices.data(), w.scratch);
  w.indices.resize(static_cast<size_t>(m));
}

void SparseSelector::begin_select(const ops::Context& ctx, const KvCache& cache, int64_t layer,
                                  const ops::AttentionQuery& query) {
  const int64_t n_kv = model_.n_head_kv;
  const int64_t group = query.n_heads / n_kv;
  const int64_t d = model_.head_dim;
  layer_ = layer;
  heads_.resize(static_cast<size_t>(n_kv));
  ++stats_.steps;
  bool any = false;
  const bool dense_layer = is_dense_layer(layer);
  for (int64_t g = 0; g < n_kv; ++g) {
    HeadWork& w = heads_[static_cast<size_t>(g)];
    w.n = cache.size(layer, g);
    w.k = topk_entries(config_.topk, w.n);
    w.sparse = !dense_layer && w.n > w.k;
    any = any || w.sparse;
    if (!w.sparse) ++stats_.dense_heads;
  }
  if (!any) return;

  Clock::time_point t0 = Clock::now();
  prepare(ctx, cache, layer, query);
  stats_.encode_seconds += seconds_since(t0);

  t0 = Clock::now();
  struct Item {
    int64_t g, u0, u1;
  };
  std::vector<Item> items;
  for (int64_t g = 0; g < n_kv; ++g) {
    HeadWork& w = heads_[static_cast<size_t>(g)];
    if (!w.sparse) continue;
    const int64_t units = score_units(w.n);
    size_scores(w, units);
    for (int64_t u0 = 0; u0 < units; u0 += kScoreChunk)
      items.push_back({g, u0, std::min(units, u0 + kScoreChunk)});
  }
  int64_t held = 0;
  for (const HeadWork& w : heads_) held += w.sparse ? w.n : 0;
  auto score_items = [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const Item& it = items[static_cast<size_t>(i)];
      score(cache, layer, it.g, query.q + it.g * group * d, group, it.u0, it.u1,
            heads_[static_cast<size_t>(it.g)]);
    }
  };
  if (held < kSerialEntries || ctx.pool.size() == 1) {
    score_items(0, static_cast<int64_t>(items.size()));
  } else {
    ctx.pool.parallel_chunks(static_cast<int64_t>(items.size()), 1, score_items);
  }
  stats_.score_seconds += seconds_since(t0);

  t0 = Clock::now();
  maybe_parallel(ctx.pool, n_kv, held, [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      HeadWork& w = heads_[static_cast<size_t>(g)];
      if (w.sparse) choose(cache, layer, g, query.q + g * group * d, group, w);
    }
  });
  stats_.select_seconds += seconds_since(t0);
  for (const HeadWork& w : heads_) {
    if (!w.sparse) continue;
    ++stats_.sparse_heads;
    stats_.entries_read += static_cast<int64_t>(w.indices.size());
    stats_.entries_held += w.n;
  }
}

bool SparseSelector::select(const KvCache& cache, int64_t layer, int64_t kv_head, const float* q,
                            int64_t group, std::vector<int32_t>& indices) {
  if (layer != layer_ || kv_head >= static_cast<int64_t>(heads_.size())) return false;
  const HeadWork& w = heads_[static_cast<size_t>(kv_head)];
  if (!w.sparse || w.n != cache.size(layer, kv_head)) return false;
  indices.assign(w.indices.begin(), w.indices.end());
  return true;
}

std::shared_ptr<SparseSelector> make_hash_selector(const SparseAttentionConfig& config,
                                                   const ModelConfig& model, HataWeights weights) {
  for (int32_t l = 0; l < model.n_layer; ++l) {
    if (std::find(config.dense_layers.begin(), config.dense_layers.end(), l) != config.dense_layers.end())
      continue;
    if (weights.layer(l) == nullptr)
      fail(
          "{}: layer {} is not dense but the hash weights have none for it (hashed layers: {}; set "
          "--attn-dense-layers to match)",
          config.method, l, fmt::join(weights.layers, ","));
  }
  return std::make_shared<HashSelector>(config, model, std::move(weights));
}

std::shared_ptr<SparseSelector> make_sparse_selector(const SparseAttentionConfig& config,
                                                     const ModelSource& source) {
  validate_sparse_attention(config);
  const ModelConfig& c = source.config;
  if (config.method == "dense") return nullptr;
  if (config.method == "exact-topk") return std::make_shared<ExactTopkSelector>(config, c);
  if (config.method == "quest") return std::make_shared<QuestSelector>(config, c);
  if (config.method == "hash-random") {
    HataWeights w =
        random_hata_weights(c, hata_hashed_layers(c.n_layer, config.dense_layers), config.rbits, config.seed);
    w.score = config.score.value_or(HataScore::Norm);
    return make_hash_selector(config, c, std::move(w));
  }
  // hata
  SparseAttentionConfig resolved = config;
  if (resolved.sidecar.empty()) resolved.sidecar = hata_sidecar_path(source.path);
  if (!std::filesystem::exists(resolved.sidecar))
    fail(
        "{}: no HATA sidecar for the model {} (train one with `ariadne calibrate --method hata -m MODEL "
        "--text "
        "FILE`, or name one with --hata FILE)",
        resolved.sidecar, source.path);
  HataWeights w = read_hata_sidecar(resolved.sidecar);
  check_hata_weights(w, source, resolved.sidecar);
  return make_hash_selector(resolved, c, std::move(w));
}

}  // namespace ariadne
