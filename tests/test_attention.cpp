// Tests of the CPU attention kernel (kernels/cpu/attention.h) against a naive double-precision reference
// written here: every instruction-set path this machine runs, every KV type (the reference reads the
// dequantized rows, so conversion is exact and the tolerance is the f32 one), GQA groups 1-8, odd head
// dims, entries over several blocks, split-K decode and tiled prefill, and adversarial inputs. Also: the
// result does not depend on the thread count, and a token decoded alone equals the same token in a prefill
// batch, bit for bit (the guarantees attention.h states).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/quants.h"

namespace ariadne {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr DType kKvTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};

// The KV entries of one layer, stored as the cache stores them (blocks of block_size rows of `type`),
// with the dequantized values the reference reads.
struct KvStore {
  DType type = DType::F32;
  int64_t n_kv = 0, d = 0, block_size = 0, n = 0;
  std::vector<std::vector<std::vector<uint8_t>>> k_blocks, v_blocks;  // [g][block] -> bytes
  std::vector<std::vector<float>> k, v;                               // [g][n][d] dequantized
  std::vector<std::vector<int32_t>> positions;                        // [g][n]
  std::vector<std::vector<float>> bias;                               // [g][n] or empty
  std::vector<std::vector<int32_t>> indices;                          // [g][...] or empty (dense)
  int32_t max_position = std::numeric_limits<int32_t>::max();         // the views' bound (none by default)
  // Views handed to the kernel.
  std::vector<std::vector<const uint8_t*>> k_ptrs, v_ptrs;
  std::vector<cpu::KvHeadView> views;

  // Random rows: k ~ N(0, k_scale), v ~ N(0, v_scale); positions 0..n-1.
  KvStore(DType t, int64_t kv_heads, int64_t dim, int64_t block, int64_t entries, uint32_t seed,
          float k_scale = 1, float v_scale = 1)
      : type(t), n_kv(kv_heads), d(dim), block_size(block), n(entries) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> kd(0.0f, k_scale), vd(0.0f, v_scale);
    const size_t row = row_bytes(type, d);
    const int64_t n_blocks = (n + block_size - 1) / block_size;
    k_blocks.resize(n_kv);
    v_blocks.resize(n_kv);
    k.resize(n_kv);
    v.resize(n_kv);
    positions.resize(n_kv);
    bias.resize(n_kv);
    indices.resize(n_kv);
    std::vector<float> src(static_cast<size_t>(d));
    for (int64_t g = 0; g < n_kv; ++g) {
      for (int64_t b = 0; b < n_blocks; ++b) {
        k_blocks[g].emplace_back(static_cast<size_t>(block_size) * row);
        v_blocks[g].emplace_back(static_cast<size_t>(block_size) * row);
      }
      k[g].resize(static_cast<size_t>(n * d));
      v[g].resize(static_cast<size_t>(n * d));
      for (int64_t j = 0; j < n; ++j) {
        for (auto& x : src) x = kd(rng);
        uint8_t* kr = k_blocks[g][j / block_size].data() + (j % block_size) * row;
        cpu::quantize_row(type, src.data(), kr, d);
        cpu::dequantize_row(type, kr, k[g].data() + j * d, d);
        for (auto& x : src) x = vd(rng);
        uint8_t* vr = v_blocks[g][j / block_size].data() + (j % block_size) * row;
        cpu::quantize_row(type, src.data(), vr, d);
        cpu::dequantize_row(type, vr, v[g].data() + j * d, d);
      }
      positions[g].resize(static_cast<size_t>(n));
      std::iota(positions[g].begin(), positions[g].end(), 0);
    }
  }

  // Replaces key row j of head g, stored and dequantized.
  void set_key(int64_t g, int64_t j, const std::vector<float>& src) {
    uint8_t* kr = k_blocks[g][j / block_size].data() + (j % block_size) * row_bytes(type, d);
    cpu::quantize_row(type, src.data(), kr, d);
    cpu::dequantize_row(type, kr, k[g].data() + j * d, d);
  }

  const cpu::KvHeadView* make_views() {
    k_ptrs.assign(n_kv, {});
    v_ptrs.assign(n_kv, {});
    views.assign(n_kv, {});
    for (int64_t g = 0; g < n_kv; ++g) {
      for (auto& b : k_blocks[g]) k_ptrs[g].push_back(b.data());
      for (auto& b : v_blocks[g]) v_ptrs[g].push_back(b.data());
      cpu::KvHeadView& view = views[g];
      view.k_blocks = k_ptrs[g].data();
      view.v_blocks = v_ptrs[g].data();
      view.positions = positions[g].data();
      view.bias = bias[g].empty() ? nullptr : bias[g].data();
      view.indices = indices[g].empty() ? nullptr : indices[g].data();
      view.n = n;
      view.n_indices = static_cast<int64_t>(indices[g].size());
      view.max_position = max_position;
    }
    return views.data();
  }
};

// A batch of query tokens.
struct Queries {
  int64_t n_tokens = 0, n_heads = 0, d = 0;
  std::vector<float> q;            // [n_tokens][n_heads][d]
  std::vector<int32_t> positions;  // [n_tokens]

  Queries(int64_t tokens, int64_t heads, int64_t dim, int32_t first_pos, uint32_t seed, float scale = 1)
      : n_tokens(tokens), n_heads(heads), d(dim) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    q.resize(static_cast<size_t>(n_tokens * n_heads * d));
    for (auto& x : q) x = dist(rng);
    for (int64_t t = 0; t < n_tokens; ++t) positions.push_back(first_pos + static_cast<int32_t>(t));
  }
};

std::vector<float> run_kernel(KvStore& kv, const Queries& qs, int threads, float scale) {
  std::vector<float> out(qs.q.size(), std::nanf(""));
  cpu::AttentionParams p{};
  p.q = qs.q.data();
  p.q_token_stride = qs.n_heads * qs.d;
  p.q_positions = qs.positions.data();
  p.n_tokens = qs.n_tokens;
  p.n_heads = qs.n_heads;
  p.n_kv_heads = kv.n_kv;
  p.head_dim = kv.d;
  p.kv_type = kv.type;
  p.block_size = kv.block_size;
  p.heads = kv.make_views();
  p.scale = scale;
  p.out = out.data();
  p.out_token_stride = qs.n_heads * qs.d;
  ThreadPool pool(threads);
  cpu::attention(p, pool);
  return out;
}

// The reference, with for every output row the error a correct f32 kernel may make: relative 1e-5 of the
// largest |v| the row can see, plus what the f32 rounding of the logits allows (a logit error e changes
// the weights by a factor up to exp(2e), so the output by about 2e * max|v|); the logit error grows with
// the magnitude of its terms, sum |q k| * scale + |bias| (biases beyond 1e20 only ever meet their own
// kind, which both sides treat alike).
struct Reference {
  std::vector<double> out;  // [n_tokens][n_heads][d]
  std::vector<double> tol;  // [n_tokens][n_heads]
};

Reference reference(const KvStore& kv, const Queries& qs, float scale) {
  const int64_t group = qs.n_heads / kv.n_kv, d = kv.d;
  const double u = std::ldexp(1.0, -24);
  Reference ref;
  ref.out.assign(qs.q.size(), 0.0);
  ref.tol.assign(static_cast<size_t>(qs.n_tokens * qs.n_heads), 0.0);
  std::vector<double> s;
  std::vector<int64_t> seen;
  for (int64_t t = 0; t < qs.n_tokens; ++t) {
    for (int64_t h = 0; h < qs.n_heads; ++h) {
      const int64_t g = h / group;
      const float* q = qs.q.data() + (t * qs.n_heads + h) * d;
      const auto& idx = kv.indices[g];
      const int64_t n_read = idx.empty() ? kv.n : static_cast<int64_t>(idx.size());
      s.clear();
      seen.clear();
      double m = -INFINITY, magnitude = 0, vmax = 0;
      for (int64_t i = 0; i < n_read; ++i) {
        const int64_t j = idx.empty() ? i : idx[i];
        if (kv.positions[g][j] > qs.positions[t]) continue;
        double dot = 0, abs_dot = 0;
        for (int64_t e = 0; e < d; ++e) {
          const double prod = double(q[e]) * kv.k[g][j * d + e];
          dot += prod;
          abs_dot += std::fabs(prod);
        }
        const double b = kv.bias[g].empty() ? 0.0 : kv.bias[g][j];
        const double x = dot * scale + b;
        magnitude =
            std::max(magnitude, abs_dot * std::fabs(scale) + (std::fabs(b) < 1e20 ? std::fabs(b) : 0.0));
        if (x == -INFINITY) continue;
        for (int64_t e = 0; e < d; ++e) vmax = std::max(vmax, std::fabs(double(kv.v[g][j * d + e])));
        s.push_back(x);
        seen.push_back(j);
        m = std::max(m, x);
      }
      double* out = ref.out.data() + (t * qs.n_heads + h) * d;
      ref.tol[t * qs.n_heads + h] = vmax * (1e-5 + 2 * (d / 16.0 + 8) * u * magnitude) + 1e-30;
      if (s.empty()) continue;  // nothing visible: zeros
      double z = 0;
      for (double& x : s) z += (x = std::exp(x - m));
      for (size_t i = 0; i < s.size(); ++i)
        for (int64_t e = 0; e < d; ++e) out[e] += s[i] / z * kv.v[g][seen[i] * d + e];
    }
  }
  return ref;
}

void expect_matches(const std::vector<float>& got, const Reference& ref, int64_t d) {
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    const double tol = ref.tol[i / static_cast<size_t>(d)];
    if (!(std::fabs(got[i] - ref.out[i]) <= tol)) {
      ADD_FAILURE() << "element " << i << " (row " << i / d << "): got " << got[i] << ", reference "
                    << ref.out[i] << ", tolerance " << tol;
      ++failures;
    }
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// q8_0 rows hold whole blocks of 32: d rounded up to a multiple of 32.
int64_t head_dim_for(DType t, int64_t d) {
  return t == DType::Q8_0 ? (d + 31) / 32 * 32 : d;
}

struct Shape {
  const char* name;
  int64_t n_tokens, n_heads, n_kv, d, block_size, n_past;  // n entries = n_past + n_tokens
};

// Decode shapes (one token over many entries: split-K with 2 or 3 threads) and prefill shapes (a batch of
// tokens appended after n_past cached entries: tiled, causal within the batch).
constexpr Shape kShapes[] = {
    {"decode_g4_d64_3000", 1, 32, 8, 64, 256, 2999},
    {"decode_g1_d80_1500", 1, 4, 4, 80, 64, 1499},
    {"decode_g8_d48_1100", 1, 16, 2, 48, 100, 1099},
    {"decode_g4_d150_800", 1, 8, 2, 150, 50, 799},
    {"decode_g2_d8_600", 2, 4, 2, 8, 32, 598},
    {"prefill_g2_d96", 37, 4, 2, 96, 128, 500},
    {"prefill_g1_d8", 70, 2, 2, 8, 16, 60},
    {"prefill_g8_d128", 3, 8, 1, 128, 4, 2},
    {"prefill_g4_d64_long", 150, 8, 2, 64, 256, 1100},
};

// Every ISA x every KV type x the shapes: within tolerance of the reference, and the same bits for 1, 2 and
// 3 threads.
TEST(AttentionKernel, MatchesReferenceForEveryIsaTypeAndShape) {
  uint32_t seed = 1;
  for (DType type : kKvTypes) {
    for (const Shape& sh : kShapes) {
      const int64_t d = head_dim_for(type, sh.d);
      SCOPED_TRACE(std::string(dtype_name(type)) + " " + sh.name + " d=" + std::to_string(d));
      KvStore kv(type, sh.n_kv, d, sh.block_size, sh.n_past + sh.n_tokens, ++seed);
      const Queries qs(sh.n_tokens, sh.n_heads, d, static_cast<int32_t>(sh.n_past), ++seed);
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      const Reference ref = reference(kv, qs, scale);
      for (cpu::Isa isa : cpu::runnable_isas()) {
        SCOPED_TRACE(cpu::isa_name(isa));
        cpu::ScopedIsa scoped(isa);
        const auto one = run_kernel(kv, qs, 1, scale);
        expect_matches(one, ref, d);
        EXPECT_TRUE(same_bits(one, run_kernel(kv, qs, 2, scale))) << "2 threads differ from 1";
        EXPECT_TRUE(same_bits(one, run_kernel(kv, qs, 3, scale))) << "3 threads differ from 1";
      }
    }
  }
}

// A token decoded alone (one query, split-K across threads) gives exactly the bits it gets inside a
// prefill batch, for every ISA, type and GQA group, with a bias and with entries reordered.
TEST(AttentionKernel, DecodeEqualsTheSameTokenInAPrefillBatch) {
  struct Case {
    int64_t n_heads, n_kv, d, n_tokens, n_past;
  };
  const Case cases[] = {
      {8, 8, 64, 20, 1300}, {8, 4, 40, 33, 700}, {8, 2, 96, 9, 1030}, {16, 2, 128, 17, 515}};
  uint32_t seed = 100;
  for (DType type : kKvTypes) {
    for (const Case& c : cases) {
      const int64_t d = head_dim_for(type, c.d);
      SCOPED_TRACE(std::string(dtype_name(type)) + " group " + std::to_string(c.n_heads / c.n_kv) +
                   " d=" + std::to_string(d));
      KvStore kv(type, c.n_kv, d, 64, c.n_past + c.n_tokens, ++seed);
      std::mt19937 rng(seed);
      std::uniform_real_distribution<float> bd(-2.0f, 0.5f);
      kv.bias[0].resize(static_cast<size_t>(kv.n));
      for (auto& b : kv.bias[0]) b = bd(rng);
      const Queries batch(c.n_tokens, c.n_heads, d, static_cast<int32_t>(c.n_past), ++seed);
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      for (cpu::Isa isa : cpu::runnable_isas()) {
        SCOPED_TRACE(cpu::isa_name(isa));
        cpu::ScopedIsa scoped(isa);
        const auto prefill = run_kernel(kv, batch, 1, scale);
        for (int64_t t : {int64_t{0}, c.n_tokens / 2, c.n_tokens - 1}) {
          Queries one(1, c.n_heads, d, batch.positions[t], 0);
          std::copy_n(batch.q.begin() + t * c.n_heads * d, c.n_heads * d, one.q.begin());
          const std::vector<float> expect(prefill.begin() + t * c.n_heads * d,
                                          prefill.begin() + (t + 1) * c.n_heads * d);
          for (int threads : {1, 2, 3})
            EXPECT_TRUE(same_bits(run_kernel(kv, one, threads, scale), expect))
                << "token " << t << ", " << threads << " threads";
        }
      }
    }
  }
}

// Queries that see nothing (every entry in their future, or every visible logit -inf) get zeros; huge
// negative biases (-1e30, the lowest float) only lose to normal logits; whole segments and tiles masked.
TEST(AttentionKernel, MaskedQueriesAndHugeNegativeBiases) {
  for (DType type : {DType::F32, DType::F16}) {
    SCOPED_TRACE(std::string(dtype_name(type)));
    const int64_t d = 64, n = 1500;
    KvStore kv(type, 2, d, 128, n, 7);
    // Head 0: entries at positions 1000.. (a query at 990 sees nothing); head 1: shuffled positions.
    std::iota(kv.positions[0].begin(), kv.positions[0].end(), 1000);
    std::mt19937 rng(8);
    std::shuffle(kv.positions[1].begin(), kv.positions[1].end(), rng);
    kv.bias[1].assign(static_cast<size_t>(n), 0.0f);
    for (int64_t j = 0; j < n; ++j) {
      const int r = static_cast<int>(rng() % 8);
      if (r == 0) kv.bias[1][j] = -1e30f;
      if (r == 1) kv.bias[1][j] = std::numeric_limits<float>::lowest();
      if (r == 2) kv.bias[1][j] = -kInf;
    }
    for (int64_t j = 512; j < 1024; ++j) kv.bias[1][j] = -kInf;  // one whole segment hidden
    // Tokens: position 990 (head 0 sees nothing), then 1000.. (head 0 sees a growing prefix); token at
    // position 3 of head 1 sees only entries with positions 0..3, which may all carry -inf.
    Queries qs(12, 4, d, 990, 9);
    for (int64_t t = 1; t < qs.n_tokens; ++t) qs.positions[t] = 1000 + static_cast<int32_t>(t * 40);
    qs.positions[5] = 3;
    const float scale = 0.125f;
    const Reference ref = reference(kv, qs, scale);
    for (cpu::Isa isa : cpu::runnable_isas()) {
      SCOPED_TRACE(cpu::isa_name(isa));
      cpu::ScopedIsa scoped(isa);
      for (int threads : {1, 3}) {
        const auto out = run_kernel(kv, qs, threads, scale);
        expect_matches(out, ref, d);
        for (int64_t h = 0; h < 2; ++h)  // token 0, heads of kv head 0: exactly zero
          for (int64_t e = 0; e < d; ++e) EXPECT_EQ(out[h * d + e], 0.0f);
        Queries one(1, 4, d, 990, 9);  // the same masked token alone (decode)
        const auto alone = run_kernel(kv, one, threads, scale);
        for (int64_t e = 0; e < 2 * d; ++e) EXPECT_EQ(alone[e], 0.0f);
      }
    }
  }
}

// All visible logits equal to -1e30 (the same for every entry): uniform weights, as in exact arithmetic.
TEST(AttentionKernel, UniformHugeNegativeBiasGivesTheMean) {
  const int64_t d = 16, n = 700;
  KvStore kv(DType::F32, 1, d, 64, n, 11);
  kv.bias[0].assign(static_cast<size_t>(n), -1e30f);
  const Queries qs(1, 2, d, n, 12);
  std::vector<double> mean(static_cast<size_t>(d), 0.0);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t e = 0; e < d; ++e) mean[e] += kv.v[0][j * d + e] / static_cast<double>(n);
  for (cpu::Isa isa : cpu::runnable_isas()) {
    SCOPED_TRACE(cpu::isa_name(isa));
    cpu::ScopedIsa scoped(isa);
    const auto out = run_kernel(kv, qs, 2, 0.25f);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t e = 0; e < d; ++e) EXPECT_NEAR(out[h * d + e], mean[e], 1e-5) << h << "," << e;
  }
}

// Sparse attention: an index subset (ascending, as selectors return it, or in any order) equals the
// reference over those entries only.
TEST(AttentionKernel, IndexSubsets) {
  for (DType type : kKvTypes) {
    SCOPED_TRACE(std::string(dtype_name(type)));
    const int64_t d = head_dim_for(type, 96), n = 2100;
    KvStore kv(type, 2, d, 256, n, 21);
    std::mt19937 rng(22);
    for (int64_t j = 0; j < n; ++j)
      if (rng() % 3 != 0) kv.indices[0].push_back(static_cast<int32_t>(j));
    for (int64_t j = 0; j < n; j += 7) kv.indices[1].push_back(static_cast<int32_t>(j));
    std::shuffle(kv.indices[1].begin(), kv.indices[1].end(), rng);
    const Queries decode(1, 8, d, n - 1, 23);
    const Queries prefill(5, 8, d, n - 5, 24);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    const Reference ref_decode = reference(kv, decode, scale), ref_prefill = reference(kv, prefill, scale);
    for (cpu::Isa isa : cpu::runnable_isas()) {
      SCOPED_TRACE(cpu::isa_name(isa));
      cpu::ScopedIsa scoped(isa);
      for (int threads : {1, 2}) {
        expect_matches(run_kernel(kv, decode, threads, scale), ref_decode, d);
        expect_matches(run_kernel(kv, prefill, threads, scale), ref_prefill, d);
      }
    }
  }
}

// A bound on the entries' positions that every query is at or past (a decode step) changes no bit of the
// output, dense or sparse, split or not; and with it the positions are not read at all: positions that would
// hide everything make no difference. A query before the bound is still masked by the positions.
TEST(AttentionKernel, PositionBoundSkipsTheMaskWithoutChangingABit) {
  for (DType type : {DType::F32, DType::F16}) {
    SCOPED_TRACE(std::string(dtype_name(type)));
    const int64_t d = 64, n = 1800;
    KvStore kv(type, 2, d, 256, n, 31);
    std::mt19937 rng(32);
    const float scale = 0.125f;
    for (const bool sparse : {false, true}) {
      for (auto& idx : kv.indices) {
        idx.clear();
        if (sparse)
          for (int32_t j = 0; j < n; ++j)
            if (rng() % 4 == 0) idx.push_back(j);
      }
      const Queries decode(1, 8, d, n - 1, 33), early(2, 8, d, n - 300, 34);
      for (cpu::Isa isa : cpu::runnable_isas()) {
        SCOPED_TRACE(cpu::isa_name(isa));
        cpu::ScopedIsa scoped(isa);
        for (int threads : {1, 3}) {
          kv.max_position = std::numeric_limits<int32_t>::max();
          const std::vector<float> plain = run_kernel(kv, decode, threads, scale);
          const std::vector<float> plain_early = run_kernel(kv, early, threads, scale);
          for (const int32_t bound : {static_cast<int32_t>(n - 1), static_cast<int32_t>(n + 40)}) {
            kv.max_position = bound;
            const std::vector<float> got = run_kernel(kv, decode, threads, scale);
            if (bound == n - 1) {
              EXPECT_EQ(0, std::memcmp(got.data(), plain.data(), got.size() * sizeof(float)))
                  << "sparse " << sparse << " threads " << threads;
              const std::vector<std::vector<int32_t>> saved = kv.positions;
              for (auto& p : kv.positions) std::fill(p.begin(), p.end(), std::numeric_limits<int32_t>::max());
              const std::vector<float> unread = run_kernel(kv, decode, threads, scale);
              kv.positions = saved;
              EXPECT_EQ(0, std::memcmp(unread.data(), plain.data(), got.size() * sizeof(float)));
            } else {  // a bound past the query: the positions decide, as without one
              EXPECT_EQ(0, std::memcmp(got.data(), plain.data(), got.size() * sizeof(float)));
            }
            const std::vector<float> got_early = run_kernel(kv, early, threads, scale);
            EXPECT_EQ(0, std::memcmp(got_early.data(), plain_early.data(), got_early.size() * sizeof(float)));
          }
        }
      }
    }
  }
}

// Large magnitudes: logits in the thousands (one entry dominates; no overflow in exp), large q and k with a
// small scale (logits of a few tens, many entries weighted), values near the f16 limit, and subnormal key
// elements.
TEST(AttentionKernel, LargeMagnitudes) {
  struct Setting {
    float qk_sigma, scale;
  };
  for (const Setting& set : {Setting{30.0f, 0.125f}, Setting{200.0f, 3e-5f}}) {
    for (DType type : kKvTypes) {
      SCOPED_TRACE(std::string(dtype_name(type)) + " sigma " + std::to_string(set.qk_sigma));
      const int64_t d = head_dim_for(type, 64), n = 900;
      KvStore kv(type, 2, d, 128, n, 31, set.qk_sigma, 1e4f);
      for (int64_t j = 0; j < n; j += 5) {  // subnormal elements (f32, bf16; f16 and q8_0 round them to 0)
        std::vector<float> row(kv.k[0].begin() + j * d, kv.k[0].begin() + (j + 1) * d);
        for (int64_t e = 0; e < 4; ++e) row[e] = (e % 2 ? -1e-41f : 3e-39f);
        kv.set_key(0, j, row);
      }
      const Queries qs(4, 4, d, n - 4, 32, set.qk_sigma);
      const Reference ref = reference(kv, qs, set.scale);
      for (cpu::Isa isa : cpu::runnable_isas()) {
        SCOPED_TRACE(cpu::isa_name(isa));
        cpu::ScopedIsa scoped(isa);
        const auto out = run_kernel(kv, qs, 2, set.scale);
        for (float x : out) ASSERT_TRUE(std::isfinite(x));
        expect_matches(out, ref, d);
      }
    }
  }
}

TEST(AttentionKernel, EmptyInputsAndBadShapes) {
  KvStore kv(DType::F16, 1, 8, 4, 0, 41);
  const Queries qs(2, 2, 8, 5, 42);
  for (float x : run_kernel(kv, qs, 2, 1.0f)) EXPECT_EQ(x, 0.0f);  // no entries: zeros
  const Queries none(0, 2, 8, 0, 43);
  EXPECT_TRUE(run_kernel(kv, none, 2, 1.0f).empty());

  KvStore q8(DType::Q8_0, 1, 32, 4, 3, 44);
  const Queries bad(1, 1, 32, 5, 45);
  q8.d = 48;  // not a whole number of q8_0 blocks
  EXPECT_THROW(run_kernel(q8, bad, 1, 1.0f), Error);
}

}  // namespace
}  // namespace ariadne
