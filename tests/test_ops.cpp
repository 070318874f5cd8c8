// Op tests (rung 1 of the numeric ladder): RMSNorm, RoPE in both layouts, SiLU gating, softmax and causal
// attention over a KV cache, each against a naive reference loop written here; threaded == single-threaded.
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "models/model.h"
#include "ops/ops.h"
#include "ops/rope.h"
#include "runtime/kv_cache.h"

namespace ariadne {
namespace {

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST(OpsRmsNorm, MatchesNaiveLoop) {
  const int64_t rows = 5, n = 96;
  const auto x = random_vector(rows * n, 1);
  const auto w = random_vector(n, 2);
  std::vector<float> y(x.size());
  cpu::rms_norm(x.data(), w.data(), y.data(), rows, n, 1e-5f);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < n; ++i) ss += double(x[r * n + i]) * x[r * n + i];
    const double inv = 1.0 / std::sqrt(ss / n + 1e-5);
    for (int64_t i = 0; i < n; ++i)
      EXPECT_NEAR(y[r * n + i], x[r * n + i] * inv * w[i], 1e-5) << r << "," << i;
  }
}

TEST(OpsRmsNorm, InPlaceAndThreadedEqualSingleThreaded) {
  const int64_t rows = 7, n = 64;
  const auto x = random_vector(rows * n, 3);
  const std::vector<float> w = random_vector(n, 4);
  std::vector<float> single(x.size()), threaded = x;
  ThreadPool p1(1), p3(3);
  ops::rms_norm(ops::Context{p1, {}}, x.data(), w, 1e-6f, rows, single.data());
  ops::rms_norm(ops::Context{p3, {}}, threaded.data(), w, 1e-6f, rows, threaded.data());
  EXPECT_EQ(single, threaded);
}

// Reference RoPE from the definition: rotate pair (a, b) of frequency i by angle pos * theta^(-2i/d).
void naive_rope(std::vector<float>& x, int64_t n_heads, int64_t d, int pos, double theta, bool neox) {
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < d / 2; ++i) {
      const double angle = pos * std::pow(theta, -2.0 * i / d);
      const int64_t a = h * d + (neox ? i : 2 * i);
      const int64_t b = h * d + (neox ? i + d / 2 : 2 * i + 1);
      const double xa = x[a], xb = x[b];
      x[a] = static_cast<float>(xa * std::cos(angle) - xb * std::sin(angle));
      x[b] = static_cast<float>(xb * std::cos(angle) + xa * std::sin(angle));
    }
  }
}

TEST(OpsRope, BothLayoutsMatchTheDefinition) {
  const int64_t n_heads = 3, d = 16, n_tokens = 4;
  for (bool neox : {false, true}) {
    ModelConfig c;
    c.head_dim = d;
    c.rope.theta = 10000.0f;
    c.rope.style = neox ? RopeStyle::NeoX : RopeStyle::Interleaved;
    const ops::RopeTable table = make_rope_table(c);
    auto x = random_vector(n_tokens * n_heads * d, 5);
    const std::vector<int32_t> positions = {0, 1, 17, 300};
    auto expect = x;
    ThreadPool pool(2);
    ops::rope(ops::Context{pool, {}}, table, x.data(), n_tokens, n_heads, d, n_heads * d, positions.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::vector<float> row(expect.begin() + t * n_heads * d, expect.begin() + (t + 1) * n_heads * d);
      naive_rope(row, n_heads, d, positions[t], 10000.0, neox);
      for (int64_t i = 0; i < n_heads * d; ++i)
        EXPECT_NEAR(x[t * n_heads * d + i], row[i], 2e-5) << neox << t << i;
    }
  }
}

// The two layouts are the same rotation on permuted rows: interleaving the NeoX halves (what
// `ariadne convert` does to Q/K rows) and rotating interleaved gives the interleaved NeoX result.
TEST(OpsRope, LayoutsAgreeUnderTheConverterPermutation) {
  const int64_t d = 8;
  auto neox = random_vector(d, 6);
  std::vector<float> inter(d);
  for (int64_t r = 0; r < d; ++r) inter[r] = neox[(r % 2) * (d / 2) + r / 2];
  naive_rope(neox, 1, d, 5, 10000.0, true);
  naive_rope(inter, 1, d, 5, 10000.0, false);
  for (int64_t r = 0; r < d; ++r) EXPECT_NEAR(inter[r], neox[(r % 2) * (d / 2) + r / 2], 1e-6);
}

TEST(OpsRope, Llama3ScalingFollowsTheHuggingFaceRule) {
  ModelConfig c;
  c.head_dim = 64;
  c.rope.theta = 500000.0f;
  c.rope.scaling = RopeScaling::Llama3;
  c.rope.factor = 8.0f;
  c.rope.low_freq_factor = 1.0f;
  c.rope.high_freq_factor = 4.0f;
  c.rope.original_context = 8192;
  const ops::RopeTable t = make_rope_table(c);
  for (int64_t i = 0; i < 32; ++i) {
    const double inv = std::pow(500000.0, -2.0 * i / 64);
    const double wavelen = 2 * M_PI / inv;
    double expect = inv;
    if (wavelen > 8192.0) {
      expect = inv / 8.0;
    } else if (wavelen >= 2048.0) {
      const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
      expect = (1 - smooth) * inv / 8.0 + smooth * inv;
    }
    EXPECT_NEAR(t.inv_freq[i], expect, 1e-6 * expect + 1e-12) << i;
  }
  c.rope.scaling = RopeScaling::Linear;
  c.rope.factor = 4.0f;
  EXPECT_FLOAT_EQ(make_rope_table(c).position_scale, 0.25f);
}

TEST(OpsElementwise, SiluMulSoftmaxAdd) {
  auto g = random_vector(33, 7), u = random_vector(33, 8);
  auto out = g;
  cpu::silu_mul(out.data(), u.data(), 33);
  for (int i = 0; i < 33; ++i) EXPECT_NEAR(out[i], g[i] / (1 + std::exp(-g[i])) * u[i], 1e-6);
  auto s = random_vector(50, 9, 10.0f);
  auto e = s;
  cpu::softmax(s.data(), 50);
  double sum = 0, max = *std::max_element(e.begin(), e.end());
  for (float v : e) sum += std::exp(v - max);
  for (int i = 0; i < 50; ++i) EXPECT_NEAR(s[i], std::exp(e[i] - max) / sum, 1e-6);
  std::vector<float> y = {1, 2, 3}, x = {0.5f, -1, 4};
  cpu::add(y.data(), x.data(), 3);
  EXPECT_EQ(y, (std::vector<float>{1.5f, 1, 7}));
}

// Causal GQA attention through the dense KV cache against a naive double loop, in two chunks (prefill,
// then more tokens appended to a non-empty cache), single vs multi-threaded.
TEST(OpsAttention, DenseCacheMatchesNaiveCausalGqa) {
  const int64_t n_heads = 4, n_kv = 2, d = 8, n_tokens = 9, group = n_heads / n_kv;
  const auto q = random_vector(n_tokens * n_heads * d, 10);
  const auto k = random_vector(n_tokens * n_kv * d, 11);
  const auto v = random_vector(n_tokens * n_kv * d, 12);
  std::vector<int32_t> pos(n_tokens);
  for (int64_t i = 0; i < n_tokens; ++i) pos[i] = static_cast<int32_t>(i);
  const float scale = 1.0f / std::sqrt(float(d));

  std::vector<float> expect(q.size());
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t g = h / group;
      std::vector<double> s(t + 1);
      double m = -1e300, z = 0;
      for (int64_t j = 0; j <= t; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e)
          dot += double(q[(t * n_heads + h) * d + e]) * k[(j * n_kv + g) * d + e];
        s[j] = dot * scale;
        m = std::max(m, s[j]);
      }
      for (auto& x : s) z += (x = std::exp(x - m));
      for (int64_t e = 0; e < d; ++e) {
        double acc = 0;
        for (int64_t j = 0; j <= t; ++j) acc += s[j] / z * v[(j * n_kv + g) * d + e];
        expect[(t * n_heads + h) * d + e] = static_cast<float>(acc);
      }
    }
  }

  std::vector<std::vector<float>> results;
  for (int threads : {1, 3}) {
    ThreadPool pool(threads);
    ops::Context ctx{pool, {}};
    DenseKvCache cache({1, n_kv, d, 16});
    std::vector<float> out(q.size());
    const int64_t split = 5;
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, split}, {split, n_tokens}}) {
      cache.store(ctx, 0, end - begin, pos.data() + begin, k.data() + begin * n_kv * d,
                  v.data() + begin * n_kv * d);
      ops::AttentionQuery query{
          q.data() + begin * n_heads * d,  pos.data() + begin, end - begin, n_heads, scale,
          out.data() + begin * n_heads * d};
      cache.attend(ctx, 0, query);
    }
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expect[i], 1e-5) << i;
    results.push_back(out);
  }
  EXPECT_EQ(results[0], results[1]);
}

TEST(OpsAttention, CacheRefusesTokensBeyondItsSize) {
  ThreadPool pool(1);
  ops::Context ctx{pool, {}};
  DenseKvCache cache({1, 1, 4, 2});
  const std::vector<float> kv(3 * 4, 0.0f);
  const std::vector<int32_t> pos = {0, 1, 2};
  EXPECT_THROW(cache.store(ctx, 0, 3, pos.data(), kv.data(), kv.data()), Error);
}

TEST(OpsEmbed, RejectsIdsOutsideTheTable) {
  ThreadPool pool(1);
  std::vector<float> table(4 * 3, 1.0f);
  TensorView t{"token_embd.weight", DType::F32, {4, 3}, reinterpret_cast<const uint8_t*>(table.data()), 48};
  std::vector<float> out(3);
  const int32_t bad = 4;
  EXPECT_THROW(ops::embed(ops::Context{pool, {}}, t, &bad, 1, out.data()), Error);
}

TEST(CoreThreadPool, ParallelForCoversEveryIndexOnceAndPropagatesErrors) {
  ThreadPool pool(4);
  std::vector<int> hits(1000, 0);
  pool.parallel_for(1000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) ++hits[i];
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  EXPECT_THROW(pool.parallel_for(10,
                                 [](int64_t b, int64_t) {
                                   if (b > 0) throw Error("boom");
                                 }),
               Error);
  pool.parallel_for(3, [](int64_t, int64_t) {});  // still usable after an error
}

}  // namespace
}  // namespace ariadne
