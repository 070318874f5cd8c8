// XL3M context selection (../shared/specs/xl3m.md §4): entropy and NLL against float64 references,
// segmentation invariants, budget-greedy selection against a brute-force reference with injected scores,
// chronological splicing without duplicated overlaps, each score mode against a naive recomputation from
// Session logits (stories260K), batch isolation, a needle far outside the window on a hand-built model whose
// certainty is known, the memory plan of a 1M-token input, streamed encoding, the C API / CLI / eval paths.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "eval/methods.h"
#include "eval/runner.h"
#include "eval/tasks.h"
#include "formats/model_source.h"
#include "formats/synth.h"
#include "runtime/generate.h"
#include "runtime/kv_cache.h"
#include "runtime/session.h"
#include "runtime/xl3m.h"
#include "test_util.h"
#include "tokenizer/load.h"
#include "tokenizer/stream_encoder.h"
#include "tokenizer/tokenizer.h"

namespace ariadne {
namespace {

constexpr const char* kStoriesDir = "fixtures/llama2c/stories260K";

std::string stories_dir() {
  return test::shared_dir() + "/" + kStoriesDir;
}

std::string stories_args() {
  return "-m " + stories_dir() + "/stories260K.bin --tokenizer " + stories_dir() + "/tok512.bin ";
}

Xl3mOptions opts(int64_t window, int64_t n_gen, int64_t segment = 0, int64_t overlap = -1,
                 Xl3mScore score = Xl3mScore::LastEntropy) {
  Xl3mOptions o;
  o.window = window;
  o.n_gen = n_gen;
  o.segment = segment;
  o.overlap = overlap;
  o.score = score;
  return o;
}

// ---- Entropy and NLL (spec §4.3). ----

double reference_entropy(const std::vector<float>& z) {
  long double zsum = 0;
  for (float v : z) zsum += std::exp(static_cast<long double>(v));
  long double h = 0;
  for (float v : z) {
    const long double p = std::exp(static_cast<long double>(v)) / zsum;
    if (p > 0) h -= p * std::log(p);
  }
  return static_cast<double>(h);
}

TEST(Xl3mEntropy, MatchesFloat64ReferenceAndKnownValues) {
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<float> z(1000);
    for (float& v : z) v = std::round(normal(rng) * 1024.0f) / 1024.0f;  // + 1000 stays exact
    const double h = entropy_from_logits(z);
    EXPECT_NEAR(h, reference_entropy(z), 1e-9);
    // Invariant to adding a constant to every logit.
    std::vector<float> shifted = z;
    for (float& v : shifted) v += 1000.0f;
    EXPECT_NEAR(entropy_from_logits(shifted), h, 1e-12);
    // NLL: log Z - z_t.
    long double zsum = 0;
    for (float v : z) zsum += std::exp(static_cast<long double>(v));
    EXPECT_NEAR(nll_from_logits(z, 17), static_cast<double>(std::log(zsum) - z[17]), 1e-9);
  }
  EXPECT_NEAR(entropy_from_logits(std::vector<float>(512, 0.25f)), std::log(512.0), 1e-12);
  std::vector<float> one_hot(512, 0.0f);
  one_hot[3] = 200.0f;
  EXPECT_LT(entropy_from_logits(one_hot), 1e-80);
  EXPECT_NEAR(nll_from_logits(one_hot, 3), 0.0, 1e-12);
  // A banned token (-inf) contributes nothing.
  std::vector<float> banned(4, 1.0f);
  banned[0] = -INFINITY;
  EXPECT_NEAR(entropy_from_logits(banned), std::log(3.0), 1e-12);
  EXPECT_TRUE(std::isnan(entropy_from_logits(std::vector<float>(3, -INFINITY))));
}

TEST(Xl3mEntropy, ScoreNames) {
  for (Xl3mScore s :
       {Xl3mScore::LastEntropy, Xl3mScore::MeanQuestionEntropy, Xl3mScore::QuestionNll, Xl3mScore::Fused})
    EXPECT_EQ(xl3m_score_from_name(xl3m_score_name(s)), s);
  EXPECT_EQ(xl3m_score_from_name("LAST_ENTROPY"), Xl3mScore::LastEntropy);
  EXPECT_EQ(xl3m_score_from_name("Mean_Q_Entropy"), Xl3mScore::MeanQuestionEntropy);
  EXPECT_EQ(xl3m_score_from_name("Q_NLL"), Xl3mScore::QuestionNll);
  EXPECT_FALSE(xl3m_score_from_name("entropy").has_value());
}

// The fused order takes in turn the best segment not yet taken by a, then by b: a segment both rank high is
// taken once and the other ranking's turn goes to its next one; NaN ranks last in each.
TEST(Xl3mEntropy, FusedScoresInterleaveTheTwoRankings) {
  //                            segment: 0    1    2    3    4
  const std::vector<double> a = {0.5, 0.1, 0.9, 0.3, NAN};  // a's order: 1 3 0 2 4
  const std::vector<double> b = {0.2, 0.8, 0.1, 0.7, 0.9};  // b's order: 2 0 3 1 4
  const std::vector<double> fused = xl3m_fuse_scores(a, b);
  // Places: segment 1 -> 0 (a's 1st), 2 -> 1 (b's 1st), 3 -> 2 (a's 2nd), 0 -> 3 (b's 2nd), 4 -> 4 (a's
  // next not taken: 0 and 2 are).
  EXPECT_EQ(fused, (std::vector<double>{3, 0, 1, 2, 4}));
  EXPECT_EQ(xl3m_rank_order(fused), (std::vector<size_t>{1, 2, 3, 0, 4}));

  // Against the definition on random scores (equal lists in every fifth trial: then the order is a's).
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 50; ++trial) {
    const size_t n = 1 + rng() % 40;
    std::vector<double> x(n), y(n);
    for (size_t i = 0; i < n; ++i) x[i] = u(rng), y[i] = trial % 5 == 0 ? x[i] : u(rng);
    const std::vector<size_t> order = xl3m_rank_order(xl3m_fuse_scores(x, y));
    const std::vector<size_t> ox = xl3m_rank_order(x), oy = xl3m_rank_order(y);
    std::vector<size_t> expected;
    std::vector<bool> taken(n, false);
    size_t ix = 0, iy = 0;
    for (bool turn_x = true; expected.size() < n; turn_x = !turn_x) {
      const std::vector<size_t>& o = turn_x ? ox : oy;
      size_t& it = turn_x ? ix : iy;
      while (it < n && taken[o[it]]) ++it;
      if (it < n) taken[o[it]] = true, expected.push_back(o[it]);
    }
    EXPECT_EQ(order, expected) << "trial " << trial;
  }
}

// ---- Segmentation (spec §4.2). ----

void expect_cover(const std::vector<TokenSpan>& segs, int64_t n_body, int64_t segment) {
  ASSERT_FALSE(segs.empty());
  EXPECT_EQ(segs.front().begin, 0);
  EXPECT_EQ(segs.back().end, n_body);
  for (size_t i = 0; i < segs.size(); ++i) {
    EXPECT_EQ(segs[i].size(), std::min(segment, n_body)) << "segment " << i;
    if (i > 0) {
      EXPECT_GT(segs[i].begin, segs[i - 1].begin) << "segment " << i;
      EXPECT_LE(segs[i].begin, segs[i - 1].end) << "gap before segment " << i;
    }
  }
}

TEST(Xl3mSegments, CoverTheBodyWithExactOverlapsWithoutSnapping) {
  for (const int64_t n_body : {1, 100, 512, 513, 960, 1000, 4096, 100000}) {
    const std::vector<TokenSpan> segs = xl3m_segments(n_body, 512, 64);
    expect_cover(segs, n_body, 512);
    // Every overlap is exactly O except the last segment's (pinned to the end), which is at least O.
    for (size_t i = 1; i < segs.size(); ++i) {
      const int64_t overlap = segs[i - 1].end - segs[i].begin;
      if (i + 1 < segs.size()) {
        EXPECT_EQ(overlap, 64) << n_body << " segment " << i;
      } else {
        EXPECT_GE(overlap, 64) << n_body;
      }
    }
    const Xl3mPlan p = plan_xl3m(4096, 1, n_body, 64, opts(1024, 64, 512, 64));
    if (!p.bypass) {
      EXPECT_EQ(p.n_segments, static_cast<int64_t>(segs.size())) << n_body;
    }
  }
}

TEST(Xl3mSegments, SnappedStartsStayWithinHalfTheOverlap) {
  std::mt19937 rng(3);
  std::vector<uint8_t> starts(20000);
  for (uint8_t& s : starts) s = rng() % 23 == 0;  // a sentence start every ~23 tokens
  auto is_start = [&](int64_t i) { return starts[static_cast<size_t>(i)] != 0; };
  const int64_t S = 256, O = 32;
  const std::vector<TokenSpan> segs = xl3m_segments(20000, S, O, is_start);
  const std::vector<TokenSpan> plain = xl3m_segments(20000, S, O);
  ASSERT_EQ(segs.size(), plain.size());
  expect_cover(segs, 20000, S);
  int snapped = 0;
  for (size_t i = 1; i + 1 < segs.size(); ++i) {
    const int64_t overlap = segs[i - 1].end - segs[i].begin;
    EXPECT_GE(overlap, 0);
    EXPECT_LE(overlap, 2 * O);
    EXPECT_LE(std::abs(segs[i].begin - plain[i].begin), O / 2);
    if (segs[i].begin != plain[i].begin) {
      ++snapped;
      EXPECT_TRUE(is_start(segs[i].begin)) << "moved but not to a sentence start: segment " << i;
    }
    // The nearest start: nothing closer to the nominal one.
    for (int64_t d = 0; d < std::abs(segs[i].begin - plain[i].begin); ++d) {
      EXPECT_FALSE(is_start(plain[i].begin - d) || is_start(plain[i].begin + d)) << "segment " << i;
    }
  }
  EXPECT_GT(snapped, 10);
}

TEST(Xl3mSegments, PlanResolvesDefaultsAndRefusesWhatCannotFit) {
  const Xl3mPlan p = plan_xl3m(4096, 1, 100000, 40, Xl3mOptions{});
  EXPECT_FALSE(p.bypass);
  EXPECT_EQ(p.window, 4096);
  EXPECT_EQ(p.segment, 512);  // C / 8
  EXPECT_EQ(p.overlap, 64);   // S / 8
  EXPECT_EQ(p.budget, 4096 - 512 - 1 - 40);
  EXPECT_LE(p.sub_context(), p.window);
  // Fits: bypassed.
  EXPECT_TRUE(plan_xl3m(4096, 1, 3000, 40, Xl3mOptions{}).bypass);
  EXPECT_FALSE(plan_xl3m(4096, 1, 3600, 40, Xl3mOptions{}).bypass);
  // A virtual window overrides the trained context.
  EXPECT_EQ(plan_xl3m(4096, 1, 100000, 40, opts(1024, 512)).segment, 128);
  EXPECT_THROW(plan_xl3m(4096, 1, 100000, 40, opts(0, 512, 100, 100)), Error);
  // No room for one segment after the answer's reserve.
  EXPECT_THROW(plan_xl3m(4096, 1, 100000, 40, opts(0, 3700)), Error);
  // A sub-context longer than the window.
  EXPECT_THROW(plan_xl3m(4096, 1, 100000, 40, opts(0, 512, 4096, 0)), Error);
  EXPECT_THROW(plan_xl3m(4096, 1, 100000, 0, Xl3mOptions{}), Error);  // no question
  // A body shorter than a segment that still does not fit (a long question): the budget holds less than
  // the body, refused with the sizes.
  try {
    plan_xl3m(4096, 1, 300, 3500, opts(0, 512));
    ADD_FAILURE() << "expected an Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("less than one segment of 300"), std::string::npos) << e.what();
  }
}

// ---- Memory of a 1M-token input: the planner's arithmetic (spec: memory decided by C, not N). ----

TEST(Xl3mMemory, OneMillionTokensCostTheirIdsAndNothingElseGrows) {
  ModelSource source;
  source.config = find_synth_shape("llama-2-7b").config;  // trained at 4096; no tensors (no weights counted)
  const Xl3mOptions o;
  const Xl3mPlan small = plan_xl3m(4096, 1, 10000, 64, o);
  const Xl3mPlan million = plan_xl3m(4096, 1, 1000000, 64, o);
  const Xl3mPlan huge = plan_xl3m(4096, 1, 20000000, 64, o);
  EXPECT_EQ(million.n_segments, static_cast<int64_t>(xl3m_segments(1000000, 512, 64).size()));
  EXPECT_EQ(million.n_segments, (1000000 - 512 + 447) / 448 + 1);
  const Xl3mMemoryEstimate a = estimate_xl3m_memory(source, small, 512, 4, DType::F16);
  const Xl3mMemoryEstimate b = estimate_xl3m_memory(source, million, 512, 4, DType::F16);
  const Xl3mMemoryEstimate c = estimate_xl3m_memory(source, huge, 512, 4, DType::F16);
  // The session part depends on the window only: a KV cache of C tokens.
  EXPECT_EQ(a.session.kv, b.session.kv);
  EXPECT_EQ(a.session.activations, b.session.activations);
  EXPECT_EQ(b.session.total(), c.session.total());
  KvCacheOptions kv;
  kv.n_layer = 32;
  kv.n_kv_heads = 32;
  kv.head_dim = 128;
  kv.n_ctx = 4096;
  kv.type = DType::F16;
  EXPECT_EQ(b.session.kv, KvCache::bytes_needed(kv));
  // The input part: 4 bytes per token plus a few bytes per segment (about 4.1 bytes per token in all).
  EXPECT_GE(b.input, 4u * 1000065u);
  EXPECT_LE(b.input, 4u * 1000065u + 40u * static_cast<uint64_t>(million.n_segments));
  EXPECT_LT(static_cast<double>(c.input) / 20000065.0, 4.2);
  // With Llama-2-7B at f16 (13.5 GB of weights) a 1M-token input fits a 24 GiB machine.
  EXPECT_LT(b.total() + synth_weight_bytes(find_synth_shape("llama-2-7b"), DType::F16), 24ull << 30);
}

// ---- Selection (spec §4.6) with injected scores. ----

// Brute force: token sets, ordered as the spec's pseudocode.
struct Reference {
  std::vector<int64_t> chosen;
  std::set<int64_t> tokens;
};
Reference reference_select(const std::vector<TokenSpan>& segs, const std::vector<double>& scores,
                           int64_t budget, int64_t top_k, int64_t n_sep) {
  std::vector<size_t> order(segs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  Reference r;
  for (size_t i : order) {
    if (top_k > 0 && static_cast<int64_t>(r.chosen.size()) == top_k) break;
    std::set<int64_t> trial = r.tokens;
    for (int64_t t = segs[i].begin; t < segs[i].end; ++t) trial.insert(t);
    int64_t gaps = 0;
    int64_t prev = -2;
    for (int64_t t : trial) {
      if (prev >= 0 && t != prev + 1) ++gaps;
      prev = t;
    }
    if (static_cast<int64_t>(trial.size()) + n_sep * gaps > budget) continue;
    r.tokens = std::move(trial);
    r.chosen.push_back(static_cast<int64_t>(i));
  }
  return r;
}

TEST(Xl3mSelect, EqualsTheBudgetGreedyReferenceOnRandomScores) {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t n_body = 200 + static_cast<int64_t>(rng() % 2000);
    const int64_t S = 16 + static_cast<int64_t>(rng() % 64);
    const int64_t O = static_cast<int64_t>(rng() % (S / 2));
    const std::vector<TokenSpan> segs = xl3m_segments(n_body, S, O);
    std::vector<double> scores(segs.size());
    for (double& s : scores) s = static_cast<double>(rng() % 7);  // many ties
    const int64_t budget = S + static_cast<int64_t>(rng() % (4 * S));
    const int64_t top_k = rng() % 3 == 0 ? 1 + static_cast<int64_t>(rng() % 4) : 0;
    const int64_t n_sep = static_cast<int64_t>(rng() % 3);
    const Xl3mSelection sel = select_xl3m_segments(segs, scores, budget, top_k, n_sep);
    const Reference ref = reference_select(segs, scores, budget, top_k, n_sep);
    ASSERT_EQ(sel.chosen, ref.chosen) << "trial " << trial;
    std::set<int64_t> tokens;
    for (size_t k = 0; k < sel.spans.size(); ++k) {
      for (int64_t t = sel.spans[k].begin; t < sel.spans[k].end; ++t) tokens.insert(t);
      if (k > 0) {
        EXPECT_GT(sel.spans[k].begin, sel.spans[k - 1].end) << "spans must be merged and ordered";
      }
    }
    EXPECT_EQ(tokens, ref.tokens) << "trial " << trial;
    EXPECT_LE(sel.n_tokens, budget);
    EXPECT_EQ(sel.n_tokens,
              static_cast<int64_t>(tokens.size()) +
                  n_sep * (static_cast<int64_t>(sel.spans.size()) - (sel.spans.empty() ? 0 : 1)));
  }
}

TEST(Xl3mSelect, TiesGoToTheEarlierSegmentAndTheBudgetIsExact) {
  // Five disjoint segments of 10, separator 1: three fit exactly in 10 + 10 + 10 + 2 = 32.
  const std::vector<TokenSpan> segs = {{0, 10}, {20, 30}, {40, 50}, {60, 70}, {80, 90}};
  const std::vector<double> scores = {2.0, 1.0, 1.0, 0.5, 1.0};
  Xl3mSelection sel = select_xl3m_segments(segs, scores, 32, 0, 1);
  EXPECT_EQ(sel.chosen, (std::vector<int64_t>{3, 1, 2}));
  EXPECT_EQ(sel.n_tokens, 32);
  EXPECT_EQ(sel.spans, (std::vector<TokenSpan>{{20, 30}, {40, 50}, {60, 70}}));
  // One token less: the third does not fit.
  sel = select_xl3m_segments(segs, scores, 31, 0, 1);
  EXPECT_EQ(sel.chosen, (std::vector<int64_t>{3, 1}));
  // A skipped segment does not end the search: an overlapping one may still fit.
  const std::vector<TokenSpan> over = {{0, 10}, {100, 110}, {5, 15}};
  sel = select_xl3m_segments(over, std::vector<double>{0.0, 1.0, 2.0}, 16, 0, 1);
  EXPECT_EQ(sel.chosen, (std::vector<int64_t>{0, 2}));  // {100,110} needs 10 + 10 + 1 > 16; {5,15} adds 5
  EXPECT_EQ(sel.spans, (std::vector<TokenSpan>{{0, 15}}));
  EXPECT_EQ(sel.n_tokens, 15);
  // Touching spans merge and need no separator.
  sel = select_xl3m_segments(std::vector<TokenSpan>{{0, 10}, {10, 20}}, std::vector<double>{0, 0}, 20, 0, 5);
  EXPECT_EQ(sel.spans, (std::vector<TokenSpan>{{0, 20}}));
  EXPECT_EQ(sel.n_tokens, 20);
  // top_k, and NaN ranks last.
  sel = select_xl3m_segments(segs, std::vector<double>{NAN, 3, 2, 1, 0}, 1000, 2, 0);
  EXPECT_EQ(sel.chosen, (std::vector<int64_t>{4, 3}));
  sel = select_xl3m_segments(segs, std::vector<double>{NAN, 3, 2, 1, 0}, 1000, 0, 0);
  EXPECT_EQ(sel.chosen.back(), 0);
}

TEST(Xl3mSplice, ChronologicalWithoutDuplicatedOverlapsAndSeparatorsOnlyInGaps) {
  std::vector<int32_t> body(300);
  std::iota(body.begin(), body.end(), 1000);
  const std::vector<int32_t> prefix = {1, 7};
  const std::vector<int32_t> question = {5, 6, 8};
  const std::vector<int32_t> sep = {9, 9};
  const Xl3mInput in{prefix, body, question};
  // Segments chosen out of order, two overlapping, two touching.
  const std::vector<TokenSpan> segs = xl3m_segments(300, 40, 10);  // starts 0, 30, 60, ...
  std::vector<double> scores(segs.size(), 10.0);
  scores[7] = 0.0;  // [210, 250)
  scores[1] = 1.0;  // [30, 70)
  scores[2] = 2.0;  // [60, 100): overlaps the previous
  scores[8] = 3.0;  // [240, 280)
  const Xl3mSelection sel = select_xl3m_segments(segs, scores, 200, 4, static_cast<int64_t>(sep.size()));
  ASSERT_EQ(sel.chosen, (std::vector<int64_t>{7, 1, 2, 8}));
  ASSERT_EQ(sel.spans, (std::vector<TokenSpan>{{30, 100}, {210, 280}}));
  const std::vector<int32_t> key = splice_xl3m(in, sel.spans, sep);
  std::vector<int32_t> expected = prefix;
  for (int64_t t = 30; t < 100; ++t) expected.push_back(body[static_cast<size_t>(t)]);
  expected.insert(expected.end(), sep.begin(), sep.end());
  for (int64_t t = 210; t < 280; ++t) expected.push_back(body[static_cast<size_t>(t)]);
  expected.insert(expected.end(), question.begin(), question.end());
  EXPECT_EQ(key, expected);
  EXPECT_EQ(static_cast<int64_t>(key.size()), 2 + sel.n_tokens + 3);
  // Contiguous spans given separately get no separator.
  const std::vector<int32_t> joined = splice_xl3m(in, std::vector<TokenSpan>{{0, 5}, {5, 8}}, sep);
  EXPECT_EQ(joined, (std::vector<int32_t>{1, 7, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 5, 6, 8}));
}

// ---- Scores against a naive recomputation from Session logits (stories260K), batch isolation. ----

class Xl3mStories : public ::testing::Test {
 protected:
  void SetUp() override {
    ARIADNE_REQUIRE_SHARED(kStoriesDir);
    source_ = open_model(stories_dir() + "/stories260K.bin");
    tokenizer_ = Tokenizer::create(load_model_vocab(source_->path, stories_dir() + "/tok512.bin"));
  }
  std::unique_ptr<Session> session(int64_t n_ctx, int64_t n_batch = 512) {
    SessionOptions o;
    o.n_ctx = n_ctx;
    o.n_batch = n_batch;
    return std::make_unique<Session>(source_, o);
  }
  std::shared_ptr<const ModelSource> source_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

const char* kStory =
    "Once upon a time, there was a little girl named Lily. She loved to play with her red ball in the park. "
    "One day, she saw a big dog. The dog was sad because it lost its bone. Lily wanted to help. She looked "
    "under the tree and found the bone. The dog was very happy and wagged its tail. Lily and the dog became "
    "best friends. Every day they played together in the sun. Then one day Tom came to the park with a "
    "kite. ";

TEST_F(Xl3mStories, EachScoreEqualsANaiveRecomputation) {
  const std::vector<int32_t> prefix = {1};
  std::vector<int32_t> body;
  for (int rep = 0; rep < 2; ++rep) {
    const std::vector<int32_t> t = tokenizer_->encode(kStory, false, false);
    body.insert(body.end(), t.begin(), t.end());
  }
  const std::vector<int32_t> question = tokenizer_->encode("The dog was happy because", false, false);
  ASSERT_GE(question.size(), 3u);
  const std::vector<TokenSpan> segs = xl3m_segments(static_cast<int64_t>(body.size()), 48, 8);
  ASSERT_GE(segs.size(), 4u);
  const Xl3mInput in{prefix, body, question};
  auto s = session(256);
  auto naive = session(256);
  for (Xl3mScore mode : {Xl3mScore::LastEntropy, Xl3mScore::MeanQuestionEntropy, Xl3mScore::QuestionNll}) {
    const std::vector<double> scores = score_xl3m_segments(*s, in, segs, mode);
    ASSERT_EQ(scores.size(), segs.size());
    for (size_t i = 0; i < segs.size(); ++i) {
      // A fresh sequence of P + segment + Xt, every row's logits, the score by its definition.
      std::vector<int32_t> u = prefix;
      u.insert(u.end(), body.begin() + segs[i].begin, body.begin() + segs[i].end);
      const size_t q0 = u.size();  // row q0 - 1 predicts question[0]
      u.insert(u.end(), question.begin(), question.end());
      naive->clear();
      const std::vector<float> logits = naive->eval(u, true);
      const size_t V = 512;
      auto row = [&](size_t r) {
        return std::vector<float>(logits.begin() + r * V, logits.begin() + (r + 1) * V);
      };
      double expected = 0;
      if (mode == Xl3mScore::LastEntropy) {
        expected = reference_entropy(row(u.size() - 1));
      } else if (mode == Xl3mScore::MeanQuestionEntropy) {
        for (size_t r = q0 - 1; r < u.size(); ++r) expected += reference_entropy(row(r));
        expected /= static_cast<double>(question.size() + 1);
      } else {
        for (size_t k = 0; k < question.size(); ++k) {
          const std::vector<float> z = row(q0 - 1 + k);
          long double zsum = 0;
          for (float v : z) zsum += std::exp(static_cast<long double>(v));
          expected += static_cast<double>(std::log(zsum) - z[static_cast<size_t>(question[k])]);
        }
        expected /= static_cast<double>(question.size());
      }
      EXPECT_NEAR(scores[i], expected, 1e-9) << xl3m_score_name(mode) << " segment " << i;
    }
    // The scores differ between segments (the test would not see a mix-up otherwise).
    EXPECT_GT(
        *std::max_element(scores.begin(), scores.end()) - *std::min_element(scores.begin(), scores.end()),
        1e-3);
  }
}

TEST_F(Xl3mStories, ScoresDoNotDependOnOrderOrChunking) {
  std::vector<int32_t> body = tokenizer_->encode(std::string(kStory) + kStory + kStory, false, false);
  const std::vector<int32_t> prefix = tokenizer_->encode("Lily", true, false);  // BOS + a header
  const std::vector<int32_t> question = tokenizer_->encode("Lily and the dog", false, false);
  const Xl3mInput in{prefix, body, question};
  const std::vector<TokenSpan> segs = xl3m_segments(static_cast<int64_t>(body.size()), 64, 16);
  auto s = session(256);
  const std::vector<double> forward = score_xl3m_segments(*s, in, segs, Xl3mScore::MeanQuestionEntropy);
  // Reversed order, and chunks of 5 tokens: each sub-context sees only P and itself.
  std::vector<TokenSpan> reversed(segs.rbegin(), segs.rend());
  auto chunked = session(256, 5);
  const std::vector<double> backward =
      score_xl3m_segments(*chunked, in, reversed, Xl3mScore::MeanQuestionEntropy);
  for (size_t i = 0; i < segs.size(); ++i) EXPECT_NEAR(backward[segs.size() - 1 - i], forward[i], 1e-4) << i;
  // The fused score is the two entropies' rankings interleaved, from the same pass.
  const std::vector<double> last = score_xl3m_segments(*s, in, segs, Xl3mScore::LastEntropy);
  const std::vector<double> fused = score_xl3m_segments(*s, in, segs, Xl3mScore::Fused);
  EXPECT_EQ(xl3m_rank_order(fused), xl3m_rank_order(xl3m_fuse_scores(last, forward)));
  // The prefix stays cached: the session holds P afterwards.
  EXPECT_EQ(chunked->n_past(), static_cast<int64_t>(prefix.size()));
}

TEST_F(Xl3mStories, BypassFeedsTheInputAsItIs) {
  const std::vector<int32_t> prefix = {1};
  const std::vector<int32_t> body = tokenizer_->encode(kStory, false, false);
  const std::vector<int32_t> question = tokenizer_->encode("Lily", false, false);
  auto s = session(512);
  const Xl3mResult r = xl3m_key_context(*s, Xl3mInput{prefix, body, question}, opts(0, 32));
  EXPECT_TRUE(r.plan.bypass);
  EXPECT_TRUE(r.segments.empty());
  std::vector<int32_t> all = prefix;
  all.insert(all.end(), body.begin(), body.end());
  all.insert(all.end(), question.begin(), question.end());
  EXPECT_EQ(r.key, all);
  EXPECT_EQ(s->n_past(), 0);
}

TEST_F(Xl3mStories, KeyContextFitsTheWindowAndKeepsSegmentsInOrder) {
  std::vector<int32_t> body;
  for (int rep = 0; rep < 8; ++rep) {
    const std::vector<int32_t> t = tokenizer_->encode(kStory, false, false);
    body.insert(body.end(), t.begin(), t.end());
  }
  const std::vector<int32_t> prefix = {1};
  const std::vector<int32_t> question = tokenizer_->encode("The dog was happy because", false, false);
  const SentenceBoundaries boundaries(*tokenizer_);
  Xl3mOptions o = opts(0, 40, 60, 12);
  o.separator = xl3m_separator_ids(*tokenizer_, "\n");
  ASSERT_EQ(o.separator.size(), 1u);  // the <0x0A> byte token, not " " + "\n"
  EXPECT_EQ(tokenizer_->token_to_piece(o.separator[0], false), "\n");
  auto s = session(512);
  const Xl3mResult r = xl3m_key_context(*s, Xl3mInput{prefix, body, question}, o, &boundaries);
  ASSERT_FALSE(r.plan.bypass);
  EXPECT_EQ(r.plan.window, 512);
  EXPECT_LE(static_cast<int64_t>(r.key.size()), 512 - 40);
  EXPECT_EQ(static_cast<int64_t>(r.key.size()),
            1 + r.selection.n_tokens + static_cast<int64_t>(question.size()));
  // No room left for another segment and its separator.
  EXPECT_GT(r.selection.n_tokens, r.plan.budget - r.plan.segment - 1);
  // Snapped segments start at sentence starts or where the arithmetic put them.
  int at_sentences = 0;
  for (size_t i = 1; i + 1 < r.segments.size(); ++i)
    at_sentences += boundaries.starts_sentence(body, r.segments[i].begin);
  EXPECT_GT(at_sentences, static_cast<int>(r.segments.size()) / 3);
  EXPECT_EQ(r.scored_tokens,
            1 + static_cast<int64_t>(r.segments.size()) * (60 + static_cast<int64_t>(question.size())));
  EXPECT_EQ(s->n_past(), 0);
}

// The answer lead (Xl3mOptions::blank_tokens): the model's greedy continuation of P + Xt is appended to Xt
// for scoring while it is a listed token of enough probability; the key context keeps Xt as given.
TEST_F(Xl3mStories, AnswerLeadIsTheSureBlankContinuationAndScoresAreReadAfterIt) {
  // Blank tokens: exactly the ids whose text is non-empty whitespace.
  const std::vector<int32_t> blank = xl3m_blank_token_ids(*tokenizer_);
  ASSERT_FALSE(blank.empty());  // SentencePiece's "▁" is a space
  EXPECT_TRUE(std::is_sorted(blank.begin(), blank.end()));
  for (int32_t id = 0; id < tokenizer_->vocab().size(); ++id) {
    const std::string piece = tokenizer_->token_to_piece(id, false);
    const bool is_blank = !piece.empty() && std::all_of(piece.begin(), piece.end(), [](char c) {
      return c == ' ' || c == '\t' || c == '\n' || c == '\r';
    });
    EXPECT_EQ(std::binary_search(blank.begin(), blank.end(), id), is_blank) << id << " '" << piece << "'";
  }

  std::vector<int32_t> body;
  for (int rep = 0; rep < 4; ++rep) {
    const std::vector<int32_t> t = tokenizer_->encode(kStory, false, false);
    body.insert(body.end(), t.begin(), t.end());
  }
  const std::vector<int32_t> prefix = {1};
  const std::vector<int32_t> question = tokenizer_->encode("The dog was happy because", false, false);
  const Xl3mInput in{prefix, body, question};
  auto s = session(256);
  // The model's greedy next two tokens after P + Xt, and the first one's probability, from plain evals.
  std::vector<int32_t> u = prefix;
  u.insert(u.end(), question.begin(), question.end());
  std::vector<float> z = s->eval(u, false);
  const auto first = static_cast<int32_t>(std::max_element(z.begin(), z.end()) - z.begin());
  const double p_first = std::exp(-nll_from_logits(z, first));
  z = s->eval(std::vector<int32_t>{first}, false);
  const auto second = static_cast<int32_t>(std::max_element(z.begin(), z.end()) - z.begin());
  s->clear();

  Xl3mOptions o = opts(160, 16, 48, 8);
  o.blank_tokens = {std::min(first, second), std::max(first, second)};  // treat both as blank
  o.lead_probability = 0.0;
  o.max_lead = 1;
  EXPECT_EQ(xl3m_answer_lead(*s, in, o), std::vector<int32_t>{first});
  EXPECT_EQ(s->n_past(), 0);
  o.max_lead = 2;
  EXPECT_EQ(xl3m_answer_lead(*s, in, o), (std::vector<int32_t>{first, second}));
  o.lead_probability = std::nextafter(p_first, 2.0);  // just above the first token's probability
  EXPECT_TRUE(xl3m_answer_lead(*s, in, o).empty());
  o.lead_probability = 0.0;
  o.blank_tokens = {first == 0 ? 1 : 0};  // the continuation is not blank
  EXPECT_TRUE(xl3m_answer_lead(*s, in, o).empty());
  o.blank_tokens = {first};
  o.max_lead = 0;
  EXPECT_TRUE(xl3m_answer_lead(*s, in, o).empty());

  // The key context's scores are those of Xt + lead; the key itself ends with Xt as given.
  o.max_lead = 1;
  const Xl3mResult r = xl3m_key_context(*s, in, o);
  ASSERT_FALSE(r.plan.bypass);
  EXPECT_EQ(r.lead, std::vector<int32_t>{first});
  std::vector<int32_t> extended = question;
  extended.push_back(first);
  auto naive = session(256);
  const std::vector<double> expected =
      score_xl3m_segments(*naive, Xl3mInput{prefix, body, extended}, r.segments, o.score);
  ASSERT_EQ(r.scores.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(r.scores[i], expected[i]) << i;
  const std::vector<double> plain = score_xl3m_segments(*naive, in, r.segments, o.score);
  EXPECT_NE(r.scores, plain);
  ASSERT_GE(r.key.size(), question.size());
  EXPECT_TRUE(std::equal(question.begin(), question.end(), r.key.end() - static_cast<long>(question.size())));
  EXPECT_EQ(r.plan.n_question, static_cast<int64_t>(extended.size()));
  // Scored tokens: the lead's pass (P + Xt) and each sub-context with the longer question.
  int64_t per_segments = 0;
  for (const TokenSpan& g : r.segments) per_segments += g.size() + static_cast<int64_t>(extended.size());
  EXPECT_EQ(r.scored_tokens, 1 + (1 + static_cast<int64_t>(question.size())) + per_segments);
}

TEST_F(Xl3mStories, SentenceBoundariesAndTailQuestion) {
  const SentenceBoundaries b(*tokenizer_);
  const std::vector<int32_t> ids =
      tokenizer_->encode("Tom ran home. The sun was hot!\nA dog barked", false, false);
  std::vector<std::string> starts;
  for (int64_t i = 0; i < static_cast<int64_t>(ids.size()); ++i)
    if (b.starts_sentence(ids, i))
      starts.push_back(tokenizer_->token_to_piece(ids[static_cast<size_t>(i)], false));
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0].substr(0, 4), " The");
  EXPECT_EQ(starts[1].substr(0, 1), "A");
  // The tail question: trailing whitespace dropped, moved back to the sentence start.
  std::vector<int32_t> text =
      tokenizer_->encode(std::string(kStory) + "Where did Tom go with the kite?\n\n", false, false);
  Xl3mOptions o;
  o.question_tokens = 4;
  o.max_question = 30;
  const TokenSpan q = xl3m_tail_question(text, 0, o, tokenizer_.get(), &b);
  const std::vector<int32_t> qids(text.begin() + q.begin, text.begin() + q.end);
  EXPECT_EQ(tokenizer_->decode(qids, false), "Where did Tom go with the kite?");
  // Without boundaries: exactly the last question_tokens.
  const TokenSpan plain = xl3m_tail_question(text, 0, o, tokenizer_.get(), nullptr);
  EXPECT_EQ(plain.size(), 4);
  EXPECT_EQ(plain.end, q.end);
}

// ---- A needle far outside the window, on a model whose certainty is known. ----

// One layer, one head, width 64, 64 tokens. Token kNeedle carries a feature that the (constant) query of
// every position attends to almost exclusively; attention copies it into an "answer" channel, and the
// output maps that channel to token kAnswer. So a context holding kNeedle predicts kAnswer with near
// certainty (entropy ~0.1); kWeak carries the feature at a third of the strength (less certain); any other
// context gives all-zero logits (entropy ln 64). RoPE acts on the last pair with theta 1e6, so positions
// barely matter.
constexpr int32_t kNeedle = 40, kWeak = 41, kAnswer = 50;

std::shared_ptr<const ModelSource> certainty_model(int64_t trained) {
  auto s = std::make_shared<ModelSource>();
  ModelConfig& c = s->config;
  c.arch = Arch::Llama;
  c.n_vocab = 64;
  c.n_embd = 64;
  c.n_layer = 1;
  c.n_head = 1;
  c.n_head_kv = 1;
  c.head_dim = 64;
  c.n_ff = 64;
  c.n_ctx_train = trained;
  c.rope.theta = 1e6f;
  c.rope.style = RopeStyle::Interleaved;
  c.bos_id = 1;
  c.eos_id = 2;
  s->path = "(certainty model)";
  s->format = "gguf";
  auto add = [&](const std::string& name, std::vector<int64_t> shape, std::vector<float> data) {
    std::vector<uint8_t> bytes(data.size() * sizeof(float));
    std::memcpy(bytes.data(), data.data(), bytes.size());
    TensorView t;
    t.name = name;
    t.type = DType::F32;
    t.shape = std::move(shape);
    t.nbytes = bytes.size();
    t.data = s->keep(std::move(bytes));
    s->tensors[name] = t;
  };
  const int64_t d = 64;
  std::vector<float> embd(static_cast<size_t>(64 * d), 0.0f);
  for (int64_t t = 0; t < 64; ++t) embd[static_cast<size_t>(t * d)] = 1.0f;  // dim 0: constant
  embd[static_cast<size_t>(kNeedle * d + 1)] = 1.0f;                         // dim 1: the feature
  embd[static_cast<size_t>(kWeak * d + 1)] = 0.15f;
  auto matrix = [&](std::initializer_list<std::tuple<int64_t, int64_t, float>> entries) {
    std::vector<float> m(static_cast<size_t>(d * d), 0.0f);
    for (const auto& [row, col, v] : entries) m[static_cast<size_t>(row * d + col)] = v;
    return m;
  };
  add("token_embd.weight", {64, d}, embd);
  add("output_norm.weight", {d}, std::vector<float>(d, 1.0f));
  std::vector<float> out(static_cast<size_t>(64 * d), 0.0f);
  out[static_cast<size_t>(kAnswer * d + 2)] = 1.0f;  // logit(kAnswer) = normalised answer channel
  add("output.weight", {64, d}, out);
  add("blk.0.attn_norm.weight", {d}, std::vector<float>(d, 1.0f));
  add("blk.0.attn_q.weight", {d, d}, matrix({{62, 0, 4.0f}}));      // q: the constant, on the slowest pair
  add("blk.0.attn_k.weight", {d, d}, matrix({{62, 1, 1.0f}}));      // k: the feature
  add("blk.0.attn_v.weight", {d, d}, matrix({{0, 1, 1.0f}}));       // v: the feature
  add("blk.0.attn_output.weight", {d, d}, matrix({{2, 0, 1.0f}}));  // into the answer channel
  add("blk.0.ffn_norm.weight", {d}, std::vector<float>(d, 1.0f));
  add("blk.0.ffn_gate.weight", {64, d}, std::vector<float>(static_cast<size_t>(64 * d), 0.0f));
  add("blk.0.ffn_up.weight", {64, d}, std::vector<float>(static_cast<size_t>(64 * d), 0.0f));
  add("blk.0.ffn_down.weight", {d, 64}, std::vector<float>(static_cast<size_t>(64 * d), 0.0f));
  return s;
}

TEST(Xl3mNeedle, ThePlantedSegmentIsChosenFarOutsideTheWindow) {
  const int64_t window = 256;
  const auto source = certainty_model(window);
  SessionOptions so;
  so.n_ctx = window;
  Session session(source, so);
  // 32x the window of filler (ids 3..30), the needle at 70% depth, a weaker one at 20%.
  std::mt19937 rng(5);
  std::vector<int32_t> body(static_cast<size_t>(32 * window));
  for (int32_t& t : body) t = 3 + static_cast<int32_t>(rng() % 28);
  const size_t needle_at = body.size() * 7 / 10;
  const size_t weak_at = body.size() / 5;
  body[needle_at] = kNeedle;
  body[weak_at] = kWeak;
  const std::vector<int32_t> prefix = {1};
  const std::vector<int32_t> question = {10, 11, 12};
  for (Xl3mScore mode : {Xl3mScore::LastEntropy, Xl3mScore::MeanQuestionEntropy}) {
    const Xl3mOptions o = opts(0, 8, 32, 4, mode);
    const Xl3mResult r = xl3m_key_context(session, Xl3mInput{prefix, body, question}, o);
    ASSERT_FALSE(r.plan.bypass);
    // The most certain segment holds the needle; the next the weak one; everything else is ln 64.
    std::vector<size_t> order(r.scores.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return r.scores[a] < r.scores[b]; });
    auto holds = [&](size_t seg, size_t at) {
      return r.segments[seg].begin <= static_cast<int64_t>(at) &&
             static_cast<int64_t>(at) < r.segments[seg].end;
    };
    EXPECT_TRUE(holds(order[0], needle_at)) << xl3m_score_name(mode);
    size_t first_plain = 0;
    while (holds(order[first_plain], needle_at) || holds(order[first_plain], weak_at)) ++first_plain;
    for (size_t k = 0; k < first_plain; ++k)
      EXPECT_LT(r.scores[order[k]], r.scores[order[first_plain]] - 1.0) << xl3m_score_name(mode);
    EXPECT_NEAR(r.scores[order.back()], std::log(64.0), 1e-3);
    bool weak_before_plain = false;
    for (size_t k = 0; k < first_plain; ++k) weak_before_plain |= holds(order[k], weak_at);
    EXPECT_TRUE(weak_before_plain);
    // The key context holds the needle, in order, and fits.
    EXPECT_NE(std::find(r.key.begin(), r.key.end(), kNeedle), r.key.end());
    EXPECT_LE(static_cast<int64_t>(r.key.size()), window - 8);
    // Answering from it: greedy decoding says kAnswer.
    GenerationOptions go;
    go.n_predict = 1;
    go.sampler.temperature = 0.0f;
    const GenerationResult g = generate(session, nullptr, r.key, go);
    ASSERT_EQ(g.tokens.size(), 1u);
    EXPECT_EQ(g.tokens[0], kAnswer);
    session.clear();
  }
  {
    // Fused: the needle's segment is both rankings' first, so it is taken first.
    const Xl3mResult r =
        xl3m_key_context(session, Xl3mInput{prefix, body, question}, opts(0, 8, 32, 4, Xl3mScore::Fused));
    ASSERT_FALSE(r.selection.chosen.empty());
    const TokenSpan first = r.segments[static_cast<size_t>(r.selection.chosen[0])];
    EXPECT_TRUE(first.begin <= static_cast<int64_t>(needle_at) &&
                static_cast<int64_t>(needle_at) < first.end);
    EXPECT_NE(std::find(r.key.begin(), r.key.end(), kNeedle), r.key.end());
  }
  // Control: truncation to the last tokens loses the needle, and the model then has no answer.
  std::vector<int32_t> tail = prefix;
  tail.insert(tail.end(), body.end() - (window - 8 - 4), body.end());
  tail.insert(tail.end(), question.begin(), question.end());
  const std::vector<float> logits = session.eval(tail, false);
  EXPECT_NEAR(entropy_from_logits(logits), std::log(64.0), 1e-3);
}

// ---- Streamed encoding equals encoding the whole text. ----

void expect_stream_equals_whole(const Tokenizer& tok, const std::string& text, const std::string& what) {
  const std::vector<int32_t> whole = tok.encode(text, false, false);
  for (const size_t chunk : {size_t{300}, size_t{4096}}) {
    StreamEncoder enc(tok, false, chunk);
    std::vector<int32_t> ids;
    size_t max_held = 0;
    for (size_t pos = 0; pos < text.size(); pos += 777) {  // pieces cut anywhere, inside characters too
      enc.push(std::string_view(text).substr(pos, 777), ids);
      max_held = std::max(max_held, enc.held_bytes());
    }
    enc.finish(ids);
    EXPECT_EQ(ids, whole) << what << " in chunks of " << chunk;
    EXPECT_LT(max_held, chunk + 2000) << what;
  }
}

TEST(Xl3mStreamEncoder, ChunksEncodeLikeTheWholeText) {
  ARIADNE_REQUIRE_SHARED("data/war-and-peace.txt");
  std::string text = test::read_text(test::shared_dir() + "/data/war-and-peace.txt").substr(200000, 60000);
  text += " Ce n’est pas «rien»: ÉTÉ. 東京 is far. “Quoted.” Done";
  if (test::shared_exists(kStoriesDir)) {
    auto tok = Tokenizer::create(load_vocab_file(stories_dir() + "/tok512.bin"));
    expect_stream_equals_whole(*tok, text, "tok512 (spm)");
  }
  for (const char* name : {"ggml-vocab-llama-spm", "ggml-vocab-gpt-2"}) {
    const std::string path = "fixtures/vocab/llama.cpp/" + std::string(name) + ".gguf";
    if (!test::shared_exists(path)) continue;
    auto tok = Tokenizer::create(load_vocab_file(test::shared_dir() + "/" + path));
    expect_stream_equals_whole(*tok, text, name);
  }
}

// ---- The C API through the CLI, and the eval method. ----

TEST(Xl3mCli, RunAnswersALongInputAndRefusesItWithoutXl3m) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  test::TempDir tmp;
  std::string text;
  for (int i = 0; i < 12; ++i) text += kStory;
  text += "Where did Tom go with the kite?\n";
  test::write_bytes(tmp.file("long.txt"), std::vector<uint8_t>(text.begin(), text.end()));
  // Without --xl3m: refused, suggesting it.
  test::CliResult r = test::run_cli("run " + stories_args() + "-f " + tmp.file("long.txt") + " -n 8");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--xl3m"), std::string::npos) << r.out;
  r = test::run_cli("run " + stories_args() + "-p hi --xl3m-segment 64");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--xl3m-segment needs --xl3m"), std::string::npos) << r.out;
  r = test::run_cli("run " + stories_args() + "-p hi --xl3m --xl3m-lead 17");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("--xl3m-lead: expected 0 to 16 tokens"), std::string::npos) << r.out;
  // With it: the key context fits, it is P + chosen spans + question, and the answer is generated.
  r = test::run_cli("run " + stories_args() + "-f " + tmp.file("long.txt") +
                        " -n 8 --temp 0 -t 1 --xl3m --xl3m-segment 64 --xl3m-overlap 8 --json",
                    "", false);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const nlohmann::json& x = j["xl3m"];
  EXPECT_FALSE(x["bypass"].get<bool>());
  EXPECT_EQ(x["window"].get<int>(), 512);
  EXPECT_EQ(x["segment"].get<int>(), 64);
  EXPECT_LE(j["n_key"].get<int>(), 512 - 8);
  EXPECT_EQ(j["n_generated"].get<int>(), 8);
  EXPECT_GT(x["n_segments"].get<int>(), 20);
  const std::vector<int32_t> key = j["key_tokens"].get<std::vector<int32_t>>();
  EXPECT_EQ(key.front(), 1);  // BOS
  int64_t span_tokens = 0;
  int64_t prev_end = -1;
  for (const auto& s : x["spans"]) {
    EXPECT_GT(s[0].get<int64_t>(), prev_end);
    prev_end = s[1].get<int64_t>();
    span_tokens += s[1].get<int64_t>() - s[0].get<int64_t>();
  }
  const int64_t n_spans = static_cast<int64_t>(x["spans"].size());
  EXPECT_EQ(static_cast<int64_t>(key.size()),
            1 + span_tokens + (n_spans - 1) + x["n_question"].get<int64_t>());
  const auto tok = Tokenizer::create(load_vocab_file(stories_dir() + "/tok512.bin"));
  const std::vector<int32_t> q(key.end() - x["n_question"].get<int64_t>(), key.end());
  // The tail question: at least 64 tokens back to a sentence start, the final newline dropped.
  const std::string question = tok->decode(q, false);
  EXPECT_GE(q.size(), 64u);
  EXPECT_TRUE(std::isupper(static_cast<unsigned char>(question.front()))) << question;
  EXPECT_EQ(question.substr(question.size() - 31), "Where did Tom go with the kite?") << question;
  EXPECT_EQ(x["top_segments"][0]["rank"].get<int>(), 0);
  EXPECT_GE(x["n_lead"].get<int>(), 0);  // scoring only: the key ends with the question as given
  EXPECT_LE(x["n_lead"].get<int>(), 2);
}

TEST(Xl3mCli, AnInputThatFitsGivesTheSameTokensAsAPlainRun) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  const std::string args =
      "run " + stories_args() + "-p \"Once upon a time, Lily\" -n 24 --temp 0 -t 1 --json";
  const test::CliResult plain = test::run_cli(args, "", false);
  const test::CliResult xl3m = test::run_cli(args + " --xl3m", "", false);
  ASSERT_EQ(plain.exit_code, 0) << plain.err;
  ASSERT_EQ(xl3m.exit_code, 0) << xl3m.err;
  const nlohmann::json a = nlohmann::json::parse(plain.out);
  const nlohmann::json b = nlohmann::json::parse(xl3m.out);
  EXPECT_TRUE(b["xl3m"]["bypass"].get<bool>());
  EXPECT_EQ(a["prompt_tokens"], b["key_tokens"]);
  EXPECT_EQ(a["generated_tokens"], b["generated_tokens"]);
  EXPECT_EQ(a["text"], b["text"]);
}

TEST(Xl3mEval, MethodsSelectContextAndRecordTheNeedle) {
  ARIADNE_REQUIRE_SHARED(kStoriesDir);
  std::shared_ptr<const ModelSource> source = open_model(stories_dir() + "/stories260K.bin");
  auto tok = Tokenizer::create(load_model_vocab(source->path, stories_dir() + "/tok512.bin"));
  eval::GeneratorOptions go;
  go.seed = 3;
  const eval::TaskGenerator gen(*tok, go);
  const eval::TaskSample sample = gen.generate("passkey", 2048, 0, 50.0);
  const eval::MethodRegistry methods = eval::builtin_methods();
  eval::RunnerOptions ro;
  eval::Runner runner(source, *tok, methods, ro);
  for (const char* name : {"xl3m", "xl3m-mean-q-entropy", "xl3m-q-nll", "xl3m-fused", "truncate"}) {
    const eval::SampleResult r = runner.run(sample, methods.parse(name));
    EXPECT_EQ(r.n_prompt, sample.n_tokens) << name;
    EXPECT_LE(r.n_fed + sample.max_new_tokens, 512) << name;
    ASSERT_TRUE(r.selection.is_object()) << name;
    EXPECT_FALSE(r.selection["bypass"].get<bool>());
    ASSERT_EQ(r.selection["gold_spans"].size(), 1u) << name;
    const int64_t gold = r.selection["gold_spans"][0][0].get<int64_t>();
    // The passkey sits at 50% depth of the body.
    EXPECT_NEAR(static_cast<double>(gold), static_cast<double>(sample.n_tokens) * 0.5, sample.n_tokens * 0.15)
        << name;
    const bool scored = std::string(name) != "truncate";
    EXPECT_EQ(r.selection["n_segments"].get<int64_t>() > 0, scored) << name;
    if (scored) {
      EXPECT_TRUE(r.selection["gold_ranks"][0].is_number()) << name;
    }
    // Round trip through the results file format.
    const eval::SampleResult back = eval::result_from_json(eval::to_json(r), "test");
    EXPECT_EQ(back.n_fed, r.n_fed);
    EXPECT_EQ(back.selection, r.selection);
  }
  // Truncation keeps the last tokens: the needle in the middle is gone.
  const eval::SampleResult t = runner.run(sample, methods.parse("truncate"));
  EXPECT_EQ(t.selection["gold_recall"].get<double>(), 0.0);
}

}  // namespace
}  // namespace ariadne
