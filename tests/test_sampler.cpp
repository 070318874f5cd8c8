#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"

namespace ariadne {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Every filter off: the draw is from softmax(logits / temperature) over the whole vocabulary.
SamplerParams unfiltered(float temperature, uint64_t seed) {
  SamplerParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  return p;
}

// Logits in [-scale, scale), from a fixed generator and our own conversion so every platform gets the
// same vector.
std::vector<float> random_logits(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::vector<float> logits(n);
  for (float& l : logits) l = scale * (2.0f * static_cast<float>(rng() >> 8) * 0x1.0p-24f - 1.0f);
  return logits;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  const double max_logit = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double total = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) total += p[i] = std::exp((logits[i] - max_logit) / temperature);
  for (double& x : p) x /= total;
  return p;
}

std::vector<float> logs_of(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

std::vector<int32_t> ids_of(const std::vector<TokenProb>& kept) {
  std::vector<int32_t> ids;
  for (const TokenProb& t : kept) ids.push_back(t.id);
  return ids;
}

// Error message of f(), or "" when it does not throw.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(SamplerGreedy, ArgmaxWithLowestIdOnTies) {
  const std::vector<float> logits = {1.0f, 3.0f, 0.0f, 3.0f, -2.0f};
  for (float temperature : {0.0f, -1.0f}) {
    SamplerParams params;  // default filters stay on: they must not matter for greedy
    params.temperature = temperature;
    Sampler sampler(params, 5);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler.sample(logits), 1);
    const auto kept = sampler.probabilities(logits);
    ASSERT_EQ(kept.size(), 1u);
    EXPECT_EQ(kept[0].id, 1);
    EXPECT_EQ(kept[0].p, 1.0f);
  }
}

TEST(SamplerGreedy, SeesPenaltiesAndBias) {
  const std::vector<float> logits = {1.0f, 3.0f, 0.0f, 2.5f, -2.0f};
  SamplerParams params = unfiltered(0.0f, 1);
  params.repeat_penalty = 2.0f;  // token 1: 3 -> 1.5, below token 3
  Sampler sampler(params, 5);
  EXPECT_EQ(sampler.sample(logits), 1);
  sampler.accept(1);
  EXPECT_EQ(sampler.sample(logits), 3);

  params.repeat_penalty = 1.0f;
  params.logit_bias = {{1, -kInf}, {3, -kInf}};  // e.g. --ignore-eos
  Sampler banned(params, 5);
  EXPECT_EQ(banned.sample(logits), 0);
}

TEST(SamplerTopK, OneEqualsGreedyAtAnyTemperature) {
  std::vector<float> logits = random_logits(1000, 7, 3.0f);
  const auto argmax = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (float temperature : {0.1f, 1.0f, 5.0f, 1000.0f}) {
    SamplerParams params = unfiltered(temperature, 123);
    params.top_k = 1;
    Sampler sampler(params, 1000);
    for (int i = 0; i < 50; ++i) ASSERT_EQ(sampler.sample(logits), argmax) << "temperature " << temperature;
  }
  // A tie for the maximum goes to the lower id, as for greedy.
  logits[999] = logits[static_cast<size_t>(argmax)];
  SamplerParams params = unfiltered(10.0f, 5);
  params.top_k = 1;
  Sampler sampler(params, 1000);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sampler.sample(logits), std::min(argmax, 999));
}

TEST(SamplerTopK, KeepsTheKBestInOrder) {
  const std::vector<float> logits = {0.0f, 5.0f, 1.0f, 4.0f, 4.0f, -1.0f, 2.0f};
  SamplerParams params = unfiltered(2.0f, 1);
  params.top_k = 3;
  Sampler sampler(params, 7);
  const auto kept = sampler.probabilities(logits);
  EXPECT_EQ(ids_of(kept), (std::vector<int32_t>{1, 3, 4}));
  // The temperature applies to the survivors: softmax({5, 4, 4} / 2).
  const auto expected = softmax({5.0f, 4.0f, 4.0f}, 2.0);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(kept[i].p, expected[i], 1e-6);
}

TEST(SamplerTopP, KeepsSmallestPrefixReachingP) {
  // Sorted probabilities 0.5, 0.2, 0.15, 0.1, 0.05 on shuffled ids 3, 0, 4, 1, 2.
  const std::vector<float> logits = logs_of({0.2, 0.1, 0.05, 0.5, 0.15});
  // top_p = 1 is off: nothing gets sorted, so the survivors stay in id order.
  const struct {
    float top_p;
    std::vector<int32_t> ids;
  } cases[] = {
      {0.3f, {3}},           {0.69f, {3, 0}},          {0.71f, {3, 0, 4}},      {0.84f, {3, 0, 4}},
      {0.86f, {3, 0, 4, 1}}, {0.99f, {3, 0, 4, 1, 2}}, {1.0f, {0, 1, 2, 3, 4}},
  };
  for (const auto& c : cases) {
    SamplerParams params = unfiltered(1.0f, 1);
    params.top_p = c.top_p;
    Sampler sampler(params, 5);
    const auto kept = sampler.probabilities(logits);
    ASSERT_EQ(ids_of(kept), c.ids) << "top_p " << c.top_p;
    // Renormalised over the survivors.
    double mass = 0.0;
    for (int32_t id : c.ids) mass += std::exp(static_cast<double>(logits[static_cast<size_t>(id)]));
    for (const TokenProb& t : kept) {
      EXPECT_NEAR(t.p, std::exp(logits[static_cast<size_t>(t.id)]) / mass, 1e-6) << "top_p " << c.top_p;
    }
  }
}

TEST(SamplerTopP, FlatVocabularyKeepsLowestIdsPastThePartialSort) {
  // 150000 equal logits: half the mass needs 75000 tokens, far past the first partial sort, and the
  // (logit, id) order makes the survivors exactly the lowest ids.
  const int32_t n = 150000;
  SamplerParams params = unfiltered(1.0f, 1);
  params.top_p = 0.5f;
  Sampler sampler(params, n);
  const auto kept = sampler.probabilities(std::vector<float>(n, 0.25f));
  ASSERT_GE(kept.size(), 75000u);
  ASSERT_LE(kept.size(), 75001u);  // rounding of the running sum may need one more
  for (size_t i = 0; i < kept.size(); ++i) ASSERT_EQ(kept[i].id, static_cast<int32_t>(i));
}

TEST(SamplerMinP, DropsTokensBelowFractionOfMax) {
  const std::vector<float> logits = logs_of({0.4, 0.3, 0.1, 0.05, 0.15});
  SamplerParams params = unfiltered(1.0f, 1);
  params.min_p = 0.3f;  // threshold 0.12
  Sampler sampler(params, 5);
  const auto kept = sampler.probabilities(logits);
  EXPECT_EQ(ids_of(kept), (std::vector<int32_t>{0, 1, 4}));
  EXPECT_NEAR(kept[0].p, 0.4 / 0.85, 1e-6);
  EXPECT_NEAR(kept[1].p, 0.3 / 0.85, 1e-6);
  EXPECT_NEAR(kept[2].p, 0.15 / 0.85, 1e-6);

  params.min_p = 1.0f;  // only the maximum survives
  Sampler strict(params, 5);
  EXPECT_EQ(ids_of(strict.probabilities(logits)), (std::vector<int32_t>{0}));
}

TEST(SamplerMinP, CombinesWithTopPInLlamaOrder) {
  // top-p normalises over everything top-k left, not over min-p's survivors: with min-p 0.4 (threshold
  // 0.16, keeps 0, 1, 2) and top-p 0.75, the top-p prefix is 0, 1, 2 (0.4 + 0.3 < 0.75 <= 0.9); had top-p
  // seen only min-p's survivors, (0.4 + 0.3) / 0.9 >= 0.75 would have stopped it at 0, 1.
  const std::vector<float> logits = logs_of({0.4, 0.3, 0.2, 0.1});
  const struct {
    float top_p;
    std::vector<int32_t> ids;
  } cases[] = {{0.75f, {0, 1, 2}}, {0.5f, {0, 1}}, {0.95f, {0, 1, 2}}, {0.3f, {0}}};
  for (const auto& c : cases) {
    SamplerParams params = unfiltered(1.0f, 1);
    params.min_p = 0.4f;
    params.top_p = c.top_p;
    Sampler sampler(params, 4);
    EXPECT_EQ(ids_of(sampler.probabilities(logits)), c.ids) << "top_p " << c.top_p;
  }
}

TEST(SamplerPenalties, ChangeExactlyTheWindowTokens) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -2.0f, 1.0f};
  SamplerParams params = unfiltered(1.0f, 1);
  params.repeat_penalty = 2.0f;
  params.frequency_penalty = 0.5f;
  params.presence_penalty = 0.25f;
  params.repeat_last_n = 3;
  Sampler sampler(params, 6);
  for (int32_t t : {4, 0, 1, 0}) sampler.accept(t);  // window: 0, 1, 0 (token 4 has left it)

  std::vector<float> adjusted = logits;
  sampler.adjust_logits(adjusted);
  EXPECT_FLOAT_EQ(adjusted[0], 2.0f / 2.0f - (2 * 0.5f + 0.25f));   // positive: divided; count 2
  EXPECT_FLOAT_EQ(adjusted[1], -1.0f * 2.0f - (1 * 0.5f + 0.25f));  // negative: multiplied; count 1
  EXPECT_EQ(adjusted[2], logits[2]);
  EXPECT_EQ(adjusted[3], logits[3]);
  EXPECT_EQ(adjusted[4], logits[4]);  // outside the last 3
  EXPECT_EQ(adjusted[5], logits[5]);

  // The window slides: one more token pushes the oldest 0 out.
  sampler.accept(5);  // window: 1, 0, 5
  adjusted = logits;
  sampler.adjust_logits(adjusted);
  EXPECT_FLOAT_EQ(adjusted[0], 1.0f - 0.75f);
  EXPECT_FLOAT_EQ(adjusted[1], -2.75f);
  EXPECT_FLOAT_EQ(adjusted[5], 0.5f - 0.75f);

  // reset() forgets the history.
  sampler.reset();
  adjusted = logits;
  sampler.adjust_logits(adjusted);
  EXPECT_EQ(adjusted, logits);
}

TEST(SamplerPenalties, EachPenaltyAloneAndBiasFirst) {
  const std::vector<float> logits = {2.0f, -1.0f, 0.5f};
  const auto adjusted_after = [&](SamplerParams params) {
    Sampler sampler(params, 3);
    for (int32_t t : {0, 0, 0, 1}) sampler.accept(t);
    std::vector<float> out = logits;
    sampler.adjust_logits(out);
    return out;
  };
  SamplerParams params = unfiltered(1.0f, 1);
  params.repeat_penalty = 1.25f;  // once per distinct token, whatever the count
  EXPECT_EQ(adjusted_after(params), (std::vector<float>{2.0f / 1.25f, -1.25f, 0.5f}));
  params = unfiltered(1.0f, 1);
  params.frequency_penalty = 0.5f;
  EXPECT_EQ(adjusted_after(params), (std::vector<float>{0.5f, -1.5f, 0.5f}));
  params = unfiltered(1.0f, 1);
  params.presence_penalty = 0.5f;
  EXPECT_EQ(adjusted_after(params), (std::vector<float>{1.5f, -1.5f, 0.5f}));
  params.repeat_last_n = 0;  // disables every penalty
  EXPECT_EQ(adjusted_after(params), logits);
  // The bias is added to the raw logit, then the penalty applies (2 + 2) / 2.
  params = unfiltered(1.0f, 1);
  params.repeat_penalty = 2.0f;
  params.logit_bias = {{0, 2.0f}, {2, -1.0f}};
  EXPECT_EQ(adjusted_after(params), (std::vector<float>{2.0f, -2.0f, -0.5f}));
}

TEST(SamplerSeed, SameSeedSameTokensDifferentSeedDifferent) {
  const std::vector<float> flat(1000, 0.0f);
  const auto draw = [&](uint64_t seed) {
    Sampler sampler(unfiltered(1.0f, seed), 1000);
    std::vector<int32_t> tokens;
    for (int i = 0; i < 64; ++i) tokens.push_back(sampler.sample(flat));
    return tokens;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));

  // reset() replays the same sequence.
  Sampler sampler(unfiltered(1.0f, 42), 1000);
  std::vector<int32_t> replay;
  sampler.reset();
  for (int i = 0; i < 64; ++i) replay.push_back(sampler.sample(flat));
  EXPECT_EQ(replay, draw(42));

  // A random seed is reported, and reusing it reproduces the run.
  SamplerParams random_params = unfiltered(1.0f, kRandomSeed);
  Sampler random_sampler(random_params, 1000);
  EXPECT_NE(random_sampler.seed(), kRandomSeed);
  std::vector<int32_t> random_run;
  for (int i = 0; i < 64; ++i) random_run.push_back(random_sampler.sample(flat));
  EXPECT_EQ(random_run, draw(random_sampler.seed()));
}

TEST(SamplerSeed, DrawFollowsTheStandardGenerator) {
  // The C++ standard fixes the 10000th output of a default-seeded (5489) mt19937_64 at
  // 9981545732273789042. On 1024 equal tokens the draw is the top 10 bits of the raw output, so the
  // 10000th token must be 9981545732273789042 >> 54 = 554 on every platform.
  Sampler sampler(unfiltered(1.0f, 5489), 1024);
  const std::vector<float> flat(1024, 0.0f);
  for (int i = 0; i < 9999; ++i) sampler.sample(flat);
  EXPECT_EQ(sampler.sample(flat), 554);
}

TEST(SamplerDistribution, EmpiricalMatchesSoftmax) {
  const std::vector<float> logits = {0.0f, 0.5f, 1.0f, -1.0f, 2.0f, -0.5f, 1.5f, -2.0f};
  for (float temperature : {1.0f, 0.5f}) {
    Sampler sampler(unfiltered(temperature, 2024), 8);
    const int n_draws = 20000;
    std::vector<int> counts(8, 0);
    for (int i = 0; i < n_draws; ++i) ++counts[static_cast<size_t>(sampler.sample(logits))];

    const auto p = softmax(logits, temperature);
    double chi2 = 0.0;
    for (size_t i = 0; i < 8; ++i) {
      const double expected = n_draws * p[i];
      const double sigma = std::sqrt(n_draws * p[i] * (1.0 - p[i]));
      EXPECT_LT(std::abs(counts[i] - expected), 5.0 * sigma)
          << "token " << i << " temperature " << temperature;
      chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    }
    // 7 degrees of freedom: P(chi2 > 24.3) = 0.001. The seed is fixed, so this cannot flake.
    EXPECT_LT(chi2, 24.3) << "temperature " << temperature;
  }
}

TEST(SamplerValidate, InvalidParamsNameTheFlag) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const struct {
    std::function<void(SamplerParams&)> change;
    const char* flag;
  } cases[] = {
      {[&](SamplerParams& p) { p.temperature = nan; }, "--temp"},
      {[](SamplerParams& p) { p.temperature = kInf; }, "--temp"},
      {[](SamplerParams& p) { p.top_k = -1; }, "--top-k"},
      {[](SamplerParams& p) { p.top_p = 0.0f; }, "--top-p"},
      {[](SamplerParams& p) { p.top_p = 1.5f; }, "--top-p"},
      {[&](SamplerParams& p) { p.top_p = nan; }, "--top-p"},
      {[](SamplerParams& p) { p.min_p = -0.1f; }, "--min-p"},
      {[](SamplerParams& p) { p.min_p = 1.1f; }, "--min-p"},
      {[&](SamplerParams& p) { p.min_p = nan; }, "--min-p"},
      {[](SamplerParams& p) { p.repeat_penalty = 0.0f; }, "--repeat-penalty"},
      {[](SamplerParams& p) { p.repeat_penalty = -1.0f; }, "--repeat-penalty"},
      {[&](SamplerParams& p) { p.repeat_penalty = nan; }, "--repeat-penalty"},
      {[](SamplerParams& p) { p.repeat_penalty = 1e-40f; }, "--repeat-penalty"},  // 1/x overflows
      {[](SamplerParams& p) { p.repeat_last_n = -1; }, "--repeat-last-n"},
      {[&](SamplerParams& p) { p.presence_penalty = nan; }, "--presence-penalty"},
      {[&](SamplerParams& p) { p.frequency_penalty = -kInf; }, "--frequency-penalty"},
      {[&](SamplerParams& p) {
         p.logit_bias = {{0, nan}};
       },
       "--logit-bias"},
      {[](SamplerParams& p) {
         p.logit_bias = {{0, kInf}};
       },
       "--logit-bias"},
      {[](SamplerParams& p) {
         p.logit_bias = {{10, -1.0f}};
       },
       "--logit-bias"},  // token outside 10
      {[](SamplerParams& p) {
         p.logit_bias = {{-1, -1.0f}};
       },
       "--logit-bias"},
  };
  for (const auto& c : cases) {
    SamplerParams params;
    c.change(params);
    const std::string message = error_of([&] { Sampler(params, 10); });
    EXPECT_NE(message.find(c.flag), std::string::npos)
        << "expected an Error naming " << c.flag << ", got '" << message << "'";
  }

  // Edge values that are valid.
  SamplerParams params;
  params.temperature = -1.0f;  // greedy, as llama-cli clamps it to 0
  params.top_k = 0;
  params.top_p = 1.0f;
  params.min_p = 1.0f;
  params.repeat_last_n = 0;
  params.presence_penalty = -2.0f;
  params.logit_bias = {{9, -kInf}};
  EXPECT_NO_THROW(validate(params));
  EXPECT_NO_THROW(Sampler(params, 10));
  params.min_p = 0.0f;
  EXPECT_NO_THROW(validate(params));
  EXPECT_NE(error_of([] { Sampler(SamplerParams{}, 0); }), "");
}

TEST(SamplerValidate, BadLogitsAreErrors) {
  Sampler sampler(unfiltered(1.0f, 1), 3);
  EXPECT_NE(error_of([&] {
              sampler.sample(std::vector<float>{0.0f, std::nanf(""), 1.0f});
            }).find("token 1"),
            std::string::npos);
  EXPECT_NE(error_of([&] { sampler.sample(std::vector<float>{kInf, 0.0f, 1.0f}); }), "");
  EXPECT_NE(error_of([&] { sampler.sample(std::vector<float>{-kInf, -kInf, -kInf}); }), "");
  // -inf masks are fine as long as one token is left.
  EXPECT_EQ(sampler.sample(std::vector<float>{-kInf, 0.0f, -kInf}), 1);

  SamplerParams all_banned = unfiltered(0.0f, 1);
  all_banned.logit_bias = {{0, -kInf}, {1, -kInf}, {2, -kInf}};
  Sampler banned(all_banned, 3);
  EXPECT_NE(error_of([&] { banned.sample(std::vector<float>{0.0f, 1.0f, 2.0f}); }), "");
}

TEST(SamplerLargeVocab, DefaultChainAndWideTopPOn150000Tokens) {
  const int32_t n_vocab = 150000;
  const std::vector<float> logits = random_logits(static_cast<size_t>(n_vocab), 11, 8.0f);
  SamplerParams defaults;  // top-k 40, top-p 0.95, min-p 0.05, temperature 0.8
  defaults.seed = 9;
  defaults.repeat_penalty = 1.1f;
  SamplerParams wide = unfiltered(1.0f, 9);
  wide.top_p = 0.95f;  // no top-k: the top-p walk must go deep into the vocabulary
  for (const SamplerParams& params : {defaults, wide}) {
    Sampler sampler(params, n_vocab);
    const auto kept = sampler.probabilities(logits);
    ASSERT_FALSE(kept.empty());
    std::vector<int32_t> kept_ids = ids_of(kept);
    std::sort(kept_ids.begin(), kept_ids.end());
    for (size_t i = 1; i < kept.size(); ++i) ASSERT_GE(kept[i - 1].p, kept[i].p);  // sorted by logit
    for (int step = 0; step < 32; ++step) {
      const int32_t token = sampler.sample(logits);
      ASSERT_GE(token, 0);
      ASSERT_LT(token, n_vocab);
      if (step == 0) {
        ASSERT_TRUE(std::binary_search(kept_ids.begin(), kept_ids.end(), token));
      }
      sampler.accept(token);
    }
  }
}

}  // namespace
}  // namespace ariadne
