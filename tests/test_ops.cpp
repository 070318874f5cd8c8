// Op tests (rung 1 of the numeric ladder): RMSNorm, RoPE in both layouts, SiLU gating, softmax and causal
// attention over a KV cache, each against a naive reference loop written here; threaded == single-threaded.
#include <atomic>
#include <cmath>
#include <random>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/packed.h"
#include "kernels/cpu/quants.h"
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

TEST(OpsElementwise, FusedAddRmsNormEqualsAddThenNormBitForBit) {
  // Odd widths and row counts, large magnitudes and denormals; one thread and three.
  for (const int64_t n : {int64_t{1}, int64_t{17}, int64_t{64}, int64_t{2049}}) {
    const int64_t rows = 5;
    auto x = random_vector(static_cast<size_t>(rows * n), 31, 1e3f);
    const auto y = random_vector(static_cast<size_t>(rows * n), 32);
    x[0] = 1e-40f;  // a denormal
    const std::vector<float> w = random_vector(static_cast<size_t>(n), 33);
    ThreadPool p1(1), p3(3);
    std::vector<float> x_ref = x, out_ref(x.size());
    ops::add(ops::Context{p1, {}}, x_ref.data(), y.data(), rows * n);
    ops::rms_norm(ops::Context{p1, {}}, x_ref.data(), w, 1e-5f, rows, out_ref.data());
    for (ThreadPool* pool : {&p1, &p3}) {
      std::vector<float> xf = x, out(x.size());
      ops::add_rms_norm(ops::Context{*pool, {}}, xf.data(), y.data(), w, 1e-5f, rows, out.data());
      EXPECT_EQ(xf, x_ref) << "n " << n << " threads " << pool->size();
      EXPECT_EQ(out, out_ref) << "n " << n << " threads " << pool->size();
    }
  }
}

TEST(OpsElementwise, ThreadedSiluMulAndAddEqualSingleThreaded) {
  // Long enough to go to the pool (prefill sizes), with a ragged end.
  const int64_t n = 3 * 65536 + 7;
  const auto g = random_vector(static_cast<size_t>(n), 34, 4.0f),
             u = random_vector(static_cast<size_t>(n), 35);
  ThreadPool p1(1), p3(3);
  auto a = g, b = g;
  ops::silu_mul(ops::Context{p1, {}}, a.data(), u.data(), n);
  ops::silu_mul(ops::Context{p3, {}}, b.data(), u.data(), n);
  EXPECT_EQ(a, b);
  for (int64_t i = 0; i < n; i += 9973)
    EXPECT_NEAR(
        a[static_cast<size_t>(i)],
        g[static_cast<size_t>(i)] / (1 + std::exp(-g[static_cast<size_t>(i)])) * u[static_cast<size_t>(i)],
        1e-5f * (1 + std::fabs(a[static_cast<size_t>(i)])));
  auto c = g, d = g;
  ops::add(ops::Context{p1, {}}, c.data(), u.data(), n);
  ops::add(ops::Context{p3, {}}, d.data(), u.data(), n);
  EXPECT_EQ(c, d);
  EXPECT_EQ(c[static_cast<size_t>(n - 1)], g[static_cast<size_t>(n - 1)] + u[static_cast<size_t>(n - 1)]);
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

// Naive causal GQA attention in double: the reference for the cache-backed kernel.
std::vector<float> naive_attention(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, int64_t n_tokens, int64_t n_heads,
                                   int64_t n_kv, int64_t d, const std::vector<float>& bias = {}) {
  const int64_t group = n_heads / n_kv;
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<float> out(static_cast<size_t>(n_tokens * n_heads * d));
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t g = h / group;
      std::vector<double> s(t + 1);
      double m = -1e300, z = 0;
      for (int64_t j = 0; j <= t; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e)
          dot += double(q[(t * n_heads + h) * d + e]) * k[(j * n_kv + g) * d + e];
        s[j] = dot * scale + (bias.empty() ? 0.0 : bias[j * n_kv + g]);
        m = std::max(m, s[j]);
      }
      for (auto& x : s) z += (x = std::exp(x - m));
      for (int64_t e = 0; e < d; ++e) {
        double acc = 0;
        for (int64_t j = 0; j <= t; ++j) acc += s[j] / z * v[(j * n_kv + g) * d + e];
        out[(t * n_heads + h) * d + e] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

struct AttentionCase {
  int64_t n_heads = 4, n_kv = 2, d = 32, n_tokens = 9;
  std::vector<float> q, k, v;
  std::vector<int32_t> pos;
  AttentionCase() {
    q = random_vector(n_tokens * n_heads * d, 10);
    k = random_vector(n_tokens * n_kv * d, 11);
    v = random_vector(n_tokens * n_kv * d, 12);
    for (int64_t i = 0; i < n_tokens; ++i) pos.push_back(static_cast<int32_t>(i));
  }
  // Stores and attends in two chunks (prefill, then more tokens on a non-empty cache).
  std::vector<float> run(KvCache& cache, ThreadPool& pool, int64_t split = 5) const {
    ops::Context ctx{pool, {}};
    std::vector<float> out(q.size());
    const float scale = 1.0f / std::sqrt(float(d));
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{0, split}, {split, n_tokens}}) {
      cache.store(ctx, 0, end - begin, pos.data() + begin, k.data() + begin * n_kv * d,
                  v.data() + begin * n_kv * d);
      ops::AttentionQuery query{
          q.data() + begin * n_heads * d,  pos.data() + begin, end - begin, n_heads, scale,
          out.data() + begin * n_heads * d};
      cache.attend(ctx, 0, query);
    }
    return out;
  }
  KvCacheOptions options(DType type, int64_t block = 4) const {
    KvCacheOptions o;
    o.n_layer = 1;
    o.n_kv_heads = n_kv;
    o.head_dim = d;
    o.n_ctx = 16;
    o.type = type;
    o.block_size = block;
    return o;
  }
};

// Causal GQA attention through the KV cache (blocks of 4 entries, so entries span several blocks) against
// the naive loop, for every cache type with its tolerance; threaded == single-threaded bit for bit.
TEST(OpsAttention, KvCacheMatchesNaiveCausalGqaForEveryType) {
  const AttentionCase c;
  const auto expect = naive_attention(c.q, c.k, c.v, c.n_tokens, c.n_heads, c.n_kv, c.d);
  for (auto [type, tol] : {std::pair<DType, float>{DType::F32, 1e-5f},
                           {DType::F16, 3e-3f},
                           {DType::BF16, 2e-2f},
                           {DType::Q8_0, 2e-2f}}) {
    SCOPED_TRACE(std::string(dtype_name(type)));
    std::vector<std::vector<float>> results;
    for (int threads : {1, 3}) {
      ThreadPool pool(threads);
      KvCache cache(c.options(type));
      const auto out = c.run(cache, pool);
      for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expect[i], tol) << i;
      results.push_back(out);
    }
    EXPECT_EQ(results[0], results[1]);
  }
}

TEST(OpsAttention, ByteAccountingIsExactAndCompactionFreesBlocks) {
  const AttentionCase c;
  KvCache cache(c.options(DType::F16, 4));
  EXPECT_EQ(cache.bytes(), 0u);
  ThreadPool pool(1);
  c.run(cache, pool);            // 9 entries per head -> 3 blocks of 4
  const uint64_t row = 2 * c.d;  // f16 row bytes
  const uint64_t per_head_block = 4 * (2 * row + sizeof(int32_t));
  EXPECT_EQ(cache.bytes(), c.n_kv * 3 * per_head_block);
  EXPECT_EQ(KvCache::bytes_per_token(c.options(DType::F16)), c.n_kv * (2 * row + 4));
  // Keep entries 0, 4 and 8 of head 1: one block remains for it.
  const std::vector<int64_t> keep = {0, 4, 8};
  const std::vector<uint8_t> k8(cache.key_row(0, 1, 8), cache.key_row(0, 1, 8) + row);
  cache.compact(0, 1, keep);
  EXPECT_EQ(cache.size(0, 1), 3);
  EXPECT_EQ(cache.positions(0, 1)[2], 8);
  EXPECT_EQ(std::vector<uint8_t>(cache.key_row(0, 1, 2), cache.key_row(0, 1, 2) + row), k8);
  EXPECT_EQ(cache.bytes(), (3 + 1) * per_head_block);
  cache.clear();
  EXPECT_EQ(cache.bytes(), 0u);
}

// The per-entry logit bias: merging two entries with identical keys into one with bias ln(2) gives exactly
// the attention of the two (chelsea.md's exactness argument), and the kernel adds the bias as the naive loop
// does.
TEST(OpsAttention, PerEntryBiasIsAddedToTheLogits) {
  const AttentionCase c;
  std::vector<float> bias(static_cast<size_t>(c.n_tokens * c.n_kv));
  for (size_t i = 0; i < bias.size(); ++i) bias[i] = 0.1f * static_cast<float>(i % 5);
  const auto expect = naive_attention(c.q, c.k, c.v, c.n_tokens, c.n_heads, c.n_kv, c.d, bias);
  ThreadPool pool(2);
  ops::Context ctx{pool, {}};
  KvCache cache(c.options(DType::F32));
  cache.store(ctx, 0, c.n_tokens, c.pos.data(), c.k.data(), c.v.data());
  for (int64_t g = 0; g < c.n_kv; ++g) {
    cache.enable_bias(0, g);
    for (int64_t j = 0; j < c.n_tokens; ++j) cache.bias(0, g)[j] = bias[j * c.n_kv + g];
  }
  std::vector<float> out(c.q.size());
  cache.attend(ctx, 0,
               {c.q.data(), c.pos.data(), c.n_tokens, c.n_heads, 1.0f / std::sqrt(float(c.d)), out.data()});
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expect[i], 1e-5) << i;
}

// A selector that reads only some entries equals dense attention with the other entries masked out.
class EveryOtherEntry : public AttentionSelector {
 public:
  std::string_view name() const override { return "every-other"; }
  bool select(const KvCache& cache, int64_t layer, int64_t kv_head, const float*, int64_t,
              std::vector<int32_t>& indices) override {
    indices.clear();
    for (int32_t j = 0; j < cache.size(layer, kv_head); j += 2) indices.push_back(j);
    return true;
  }
};

TEST(OpsAttention, SelectedSubsetEqualsMaskedDense) {
  const AttentionCase c;
  ThreadPool pool(2);
  ops::Context ctx{pool, {}};
  KvCache sparse(c.options(DType::F32)), masked(c.options(DType::F32));
  sparse.set_selector(std::make_shared<EveryOtherEntry>());
  const int64_t prompt = c.n_tokens - 1;
  sparse.store(ctx, 0, c.n_tokens, c.pos.data(), c.k.data(), c.v.data());
  masked.store(ctx, 0, c.n_tokens, c.pos.data(), c.k.data(), c.v.data());
  for (int64_t g = 0; g < c.n_kv; ++g) {  // mask odd entries with a -inf bias
    masked.enable_bias(0, g);
    for (int64_t j = 1; j < c.n_tokens; j += 2) masked.bias(0, g)[j] = -INFINITY;
  }
  const float scale = 1.0f / std::sqrt(float(c.d));
  const float* q_last = c.q.data() + prompt * c.n_heads * c.d;
  std::vector<float> a(c.n_heads * c.d), b(c.n_heads * c.d);
  sparse.attend(ctx, 0, {q_last, c.pos.data() + prompt, 1, c.n_heads, scale, a.data()});
  masked.attend(ctx, 0, {q_last, c.pos.data() + prompt, 1, c.n_heads, scale, b.data()});
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6) << i;
}

TEST(OpsAttention, CacheRefusesTokensBeyondItsSize) {
  ThreadPool pool(1);
  ops::Context ctx{pool, {}};
  KvCacheOptions o;
  o.n_layer = 1, o.n_kv_heads = 1, o.head_dim = 4, o.n_ctx = 2;
  KvCache cache(o);
  const std::vector<float> kv(3 * 4, 0.0f);
  const std::vector<int32_t> pos = {0, 1, 2};
  EXPECT_THROW(cache.store(ctx, 0, 3, pos.data(), kv.data(), kv.data()), Error);
  o.type = DType::Q8_0;  // q8_0 rows need head_dim % 32 == 0
  EXPECT_THROW(KvCache{o}, Error);
}

TEST(OpsEmbed, RejectsIdsOutsideTheTable) {
  ThreadPool pool(1);
  std::vector<float> table(4 * 3, 1.0f);
  TensorView t{"token_embd.weight", DType::F32, {4, 3}, reinterpret_cast<const uint8_t*>(table.data()), 48};
  std::vector<float> out(3);
  const int32_t bad = 4;
  EXPECT_THROW(ops::embed(ops::Context{pool, {}}, t, &bad, 1, out.data()), Error);
}

// A Q4_0 table with a packed copy (as the loader makes for a tied output head) gives the rows of the plain
// table, bit for bit, without reading the plain bytes.
TEST(OpsEmbed, PackedTableGivesThePlainRows) {
  ThreadPool pool(2);
  const int64_t n_vocab = 37, n_embd = 64;
  const std::vector<float> values = random_vector(static_cast<size_t>(n_vocab * n_embd), 31);
  const size_t row = row_bytes(DType::Q4_0, n_embd);
  std::vector<uint8_t> q(row * n_vocab);
  for (int64_t r = 0; r < n_vocab; ++r)
    cpu::quantize_row(DType::Q4_0, values.data() + r * n_embd, q.data() + r * row, n_embd);
  std::vector<uint8_t> packed(cpu::q4_0_packed_bytes(n_vocab, n_embd));
  cpu::pack_q4_0(q.data(), row, n_vocab, n_embd, packed.data());
  const TensorView plain{"token_embd.weight", DType::Q4_0, {n_vocab, n_embd}, q.data(), q.size()};
  TensorView with_packed = plain;
  with_packed.data = nullptr;  // must not be read
  with_packed.packed = packed.data();
  const std::vector<int32_t> ids = {0, 36, 15, 16, 17, 5, 36};
  std::vector<float> want(ids.size() * n_embd), got(ids.size() * n_embd, -1.0f);
  const ops::Context ctx{pool, {}};
  ops::embed(ctx, plain, ids.data(), static_cast<int64_t>(ids.size()), want.data());
  ops::embed(ctx, with_packed, ids.data(), static_cast<int64_t>(ids.size()), got.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << i;
  // And a linear layer over it reads the packed copy (the plain one is gone): the naive dot of each row.
  std::vector<float> y(ids.size() * n_vocab);
  const std::vector<float> x = random_vector(ids.size() * n_embd, 32);
  ops::linear(ctx, with_packed, nullptr, x.data(), static_cast<int64_t>(ids.size()), y.data());
  std::vector<float> w(n_embd);
  for (int64_t r = 0; r < n_vocab; ++r) {
    cpu::dequantize_row(DType::Q4_0, q.data() + r * row, w.data(), n_embd);
    for (size_t t = 0; t < ids.size(); ++t) {
      double ref = 0.0, mag = 0.0;
      for (int64_t i = 0; i < n_embd; ++i) {
        ref += static_cast<double>(w[i]) * x[t * n_embd + i];
        mag += std::fabs(static_cast<double>(w[i]) * x[t * n_embd + i]);
      }
      // 8-bit activations: within a few percent of the magnitude.
      ASSERT_NEAR(y[t * n_vocab + r], ref, 0.02 * mag + 1e-6) << t << "," << r;
    }
  }
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

TEST(CoreThreadPool, ParallelChunksCoversEveryIndexOnceInChunks) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t chunk : {1, 7, 64, 5000}) {
      std::vector<std::atomic<int>> hits(1000);
      std::atomic<int> calls{0};
      pool.parallel_chunks(1000, chunk, [&](int64_t b, int64_t e) {
        ASSERT_EQ(b % chunk, 0);
        ASSERT_EQ(e, std::min<int64_t>(1000, b + chunk));
        ++calls;
        for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
      });
      for (const auto& h : hits) ASSERT_EQ(h.load(), 1) << threads << " threads, chunk " << chunk;
      EXPECT_EQ(calls.load(), (1000 + chunk - 1) / chunk);
    }
    EXPECT_THROW(pool.parallel_chunks(100, 3,
                                      [](int64_t b, int64_t) {
                                        if (b == 42) throw Error("boom");
                                      }),
                 Error);
  }
}

}  // namespace
}  // namespace ariadne
