#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"

namespace ariadne {

namespace {

void require_finite(float value, const char* flag) {
  if (!std::isfinite(value)) fail("{}: expected a finite number, got {}", flag, value);
}

// Uniform double in [0, 1) from the generator's raw output: the top 53 bits scaled by 2^-53, which is
// exact in a double, so every platform gets the same value for the same generator state.
double uniform01(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

uint64_t resolve_seed(uint64_t seed) {
  if (seed != kRandomSeed) return seed;
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ static_cast<uint64_t>(device());
}

}  // namespace

void validate(const SamplerParams& params) {
  require_finite(params.temperature, "--temp");
  if (params.top_k < 0) fail("--top-k: expected >= 0 (0 = disabled), got {}", params.top_k);
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f)) {
    fail("--top-p: expected a value in (0, 1] (1 = disabled), got {}", params.top_p);
  }
  if (!(params.min_p >= 0.0f && params.min_p <= 1.0f)) {
    fail("--min-p: expected a value in [0, 1] (0 = disabled), got {}", params.min_p);
  }
  // 1/penalty must be finite too: positive logits are divided by it.
  if (!(params.repeat_penalty > 0.0f) || !std::isfinite(params.repeat_penalty) ||
      !std::isfinite(1.0f / params.repeat_penalty)) {
    fail("--repeat-penalty: expected a finite number > 0 (1 = disabled), got {}", params.repeat_penalty);
  }
  if (params.repeat_last_n < 0) {
    fail("--repeat-last-n: expected >= 0 (0 = disabled), got {}", params.repeat_last_n);
  }
  require_finite(params.presence_penalty, "--presence-penalty");
  require_finite(params.frequency_penalty, "--frequency-penalty");
  for (const auto& [token, bias] : params.logit_bias) {
    // -inf bans a token; +inf would make the softmax undefined.
    if (std::isnan(bias) || bias == std::numeric_limits<float>::infinity()) {
      fail("--logit-bias: token {}: expected a finite bias or -inf, got {}", token, bias);
    }
  }
}

Sampler::Sampler(SamplerParams params, int32_t n_vocab)
    : params_(std::move(params)), n_vocab_(n_vocab), seed_(resolve_seed(params_.seed)), rng_(seed_) {
  validate(params_);
  if (n_vocab_ <= 0) fail("sampler: vocabulary size must be positive, got {}", n_vocab_);
  for (const auto& [token, bias] : params_.logit_bias) {
    if (token < 0 || token >= n_vocab_) {
      fail("--logit-bias: token {} is outside the vocabulary [0, {})", token, n_vocab_);
    }
  }
  counts_.assign(static_cast<size_t>(n_vocab_), 0);
}

bool Sampler::penalties_enabled() const {
  return params_.repeat_last_n > 0 && !(params_.repeat_penalty == 1.0f && params_.frequency_penalty == 0.0f &&
                                        params_.presence_penalty == 0.0f);
}

void Sampler::accept(int32_t token) {
  ARIADNE_CHECK(token >= 0 && token < n_vocab_, "accepted token outside the vocabulary");
  const auto capacity = static_cast<size_t>(params_.repeat_last_n);
  if (capacity == 0) return;
  if (window_.size() < capacity) {
    window_.push_back(token);
  } else {
    // Full ring: window_head_ holds the oldest token, which leaves the window.
    --counts_[static_cast<size_t>(window_[window_head_])];
    window_[window_head_] = token;
    window_head_ = (window_head_ + 1) % capacity;
  }
  ++counts_[static_cast<size_t>(token)];
}

void Sampler::reset() {
  for (int32_t token : window_) counts_[static_cast<size_t>(token)] = 0;
  window_.clear();
  window_head_ = 0;
  rng_.seed(seed_);
}

void Sampler::adjust_logits(std::span<float> logits) const {
  ARIADNE_CHECK(logits.size() == static_cast<size_t>(n_vocab_), "logits size differs from n_vocab");
  for (const auto& [token, bias] : params_.logit_bias) logits[static_cast<size_t>(token)] += bias;
  if (!penalties_enabled()) return;

  // Each distinct token of the window is penalised once, however often it occurs (the count enters only
  // through the frequency penalty).
  std::vector<int32_t> distinct(window_);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());

  const float repeat = params_.repeat_penalty;
  for (int32_t token : distinct) {
    const auto index = static_cast<size_t>(token);
    const int32_t count = counts_[index];
    float logit = logits[index];
    // CTRL (Keskar et al. 2019) divides the logit; dividing a negative logit would raise its probability,
    // so negative ones are multiplied instead (the llama.cpp convention).
    logit = logit <= 0.0f ? logit * repeat : logit / repeat;
    // OpenAI's frequency / presence penalties, counted over the same window.
    logit -=
        static_cast<float>(count) * params_.frequency_penalty + (count > 0 ? params_.presence_penalty : 0.0f);
    logits[index] = logit;
  }
}

namespace {

// A strict total order (ties broken by id), so partial sorts give the same prefix on every platform.
template <typename C>
bool better(const C& a, const C& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

}  // namespace

void Sampler::sort_prefix(size_t count) {
  count = std::min(count, candidates_.size());
  if (count <= n_sorted_) return;
  // The first n_sorted_ are already the best ones, in order, so only the rest needs ordering.
  std::partial_sort(candidates_.begin() + static_cast<ptrdiff_t>(n_sorted_),
                    candidates_.begin() + static_cast<ptrdiff_t>(count), candidates_.end(),
                    better<Candidate>);
  n_sorted_ = count;
}

void Sampler::apply_top_k() {
  const auto k = static_cast<size_t>(params_.top_k);
  if (k == 0 || k >= candidates_.size()) return;
  sort_prefix(k);
  candidates_.resize(k);
}

float Sampler::max_candidate_logit() const {
  float max_logit = candidates_[0].logit;
  for (const Candidate& c : candidates_) max_logit = std::max(max_logit, c.logit);
  return max_logit;
}

double Sampler::softmax_mass(float max_logit) const {
  double total = 0.0;
  for (const Candidate& c : candidates_) total += std::exp(static_cast<double>(c.logit - max_logit));
  return total;
}

void Sampler::apply_top_p(float max_logit, double total) {
  if (params_.top_p >= 1.0f) return;
  const size_t n = candidates_.size();

  // Walk the candidates best first, sorting only as far as the walk needs: for a peaked distribution a
  // few hundred out of 150K, instead of a full O(n log n) sort. The prefix doubles when exhausted.
  const double target = static_cast<double>(params_.top_p) * total;
  sort_prefix(256);
  double cumulative = 0.0;
  size_t kept = n;
  for (size_t i = 0; i < n; ++i) {
    if (i == n_sorted_) sort_prefix(2 * n_sorted_);
    cumulative += std::exp(static_cast<double>(candidates_[i].logit - max_logit));
    if (cumulative >= target) {
      kept = i + 1;
      break;
    }
  }
  // Either the loop stopped inside the sorted prefix, or it walked (and sorted) everything.
  candidates_.resize(kept);
  n_sorted_ = kept;
}

void Sampler::apply_min_p() {
  if (params_.min_p <= 0.0f) return;
  const float max_logit = max_candidate_logit();
  // p_i >= min_p * p_max  <=>  logit_i >= logit_max + log(min_p): no softmax needed.
  const double threshold = static_cast<double>(max_logit) + std::log(static_cast<double>(params_.min_p));
  size_t sorted_kept = 0;
  for (size_t i = 0; i < n_sorted_; ++i)
    sorted_kept += static_cast<double>(candidates_[i].logit) >= threshold;
  // remove_if keeps the relative order, so the draw order stays the deterministic one.
  const auto end = std::remove_if(candidates_.begin(), candidates_.end(), [threshold](const Candidate& c) {
    return static_cast<double>(c.logit) < threshold;
  });
  candidates_.erase(end, candidates_.end());
  n_sorted_ = sorted_kept;
}

void Sampler::compute_probs(float temperature) {
  const float max_logit = max_candidate_logit();
  probs_.resize(candidates_.size());
  double total = 0.0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    probs_[i] = std::exp(static_cast<double>(candidates_[i].logit - max_logit) / temperature);
    total += probs_[i];
  }
  for (double& p : probs_) p /= total;
}

void Sampler::run_chain(std::span<const float> logits) {
  ARIADNE_CHECK(logits.size() == static_cast<size_t>(n_vocab_), "logits size differs from n_vocab");
  adjusted_.assign(logits.begin(), logits.end());
  for (size_t i = 0; i < adjusted_.size(); ++i) {
    // -inf is a legitimate mask; NaN or +inf means the forward pass broke, and would poison the softmax.
    if (std::isnan(adjusted_[i]) || adjusted_[i] == std::numeric_limits<float>::infinity()) {
      fail("sampler: logit of token {} is {} (the forward pass produced a non-finite value)", i,
           adjusted_[i]);
    }
  }
  adjust_logits(adjusted_);

  candidates_.clear();
  n_sorted_ = 0;
  for (size_t i = 0; i < adjusted_.size(); ++i) {
    const float logit = adjusted_[i];
    if (logit == -std::numeric_limits<float>::infinity()) continue;  // banned or masked
    if (!std::isfinite(logit)) {
      fail("sampler: logit of token {} became {} after the logit bias and penalties", i, logit);
    }
    candidates_.push_back({static_cast<int32_t>(i), logit});
  }
  if (candidates_.empty()) fail("sampler: every token has logit -inf (all banned by --logit-bias?)");

  if (greedy()) {
    // The first strict maximum in id order: the lowest id wins ties.
    Candidate best = candidates_[0];
    for (const Candidate& c : candidates_) {
      if (c.logit > best.logit) best = c;
    }
    candidates_.assign(1, best);
    n_sorted_ = 1;
    probs_.assign(1, 1.0);
    return;
  }

  apply_top_k();
  // llama.cpp's order is top-p, then min-p. Both keep a prefix of the same (logit, id) order, and min-p's
  // threshold depends only on the maximum, which top-p always keeps: so the two commute as long as top-p
  // normalises over top-k's survivors. Running min-p first (one O(n) pass) spares top-p's sort most of a
  // flat 150K vocabulary when top-k is off.
  if (params_.top_p < 1.0f) {
    // Probabilities at temperature 1 (llama.cpp applies the temperature last).
    const float max_logit = max_candidate_logit();
    const double total = softmax_mass(max_logit);
    apply_min_p();
    apply_top_p(max_logit, total);
  } else {
    apply_min_p();
  }
  compute_probs(params_.temperature);
}

int32_t Sampler::sample(std::span<const float> logits) {
  run_chain(logits);
  if (greedy()) return candidates_[0].id;

  // Inverse-CDF draw in the (deterministic) candidate order. A strict > never selects a token of
  // probability 0.
  const double u = uniform01(rng_);
  double cumulative = 0.0;
  for (size_t i = 0; i < candidates_.size(); ++i) {
    cumulative += probs_[i];
    if (cumulative > u) return candidates_[i].id;
  }
  // Rounding left the sum of probabilities just below u: take the last token that can occur.
  for (size_t i = candidates_.size(); i-- > 0;) {
    if (probs_[i] > 0.0) return candidates_[i].id;
  }
  return candidates_[0].id;
}

std::vector<TokenProb> Sampler::probabilities(std::span<const float> logits) {
  run_chain(logits);
  std::vector<TokenProb> result(candidates_.size());
  for (size_t i = 0; i < candidates_.size(); ++i) {
    result[i] = {candidates_[i].id, static_cast<float>(probs_[i])};
  }
  return result;
}

}  // namespace ariadne
