// AVX2 + FMA + F16C kernels of gemm.h (no VNNI: 8-bit products through maddubs/madd). Compiled with
// -march=x86-64-v3; see the include rule in isa.h.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/gemm.h"

namespace ariadne::cpu::gemm {

namespace {

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

// Fixed-order horizontal sums.
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// How far ahead of the block being read the weights are prefetched.
constexpr int kPrefetchBytes = 1024;

inline const uint8_t* row(const Tile& t, int r) {
  return t.w + static_cast<size_t>(r) * t.w_stride;
}
template <typename T>
inline const T* token(const Tile& t, int c) {
  return reinterpret_cast<const T*>(static_cast<const uint8_t*>(t.x) + static_cast<size_t>(c) * t.x_stride);
}

// --- Float weights: 8 lanes per output, the tail (n % 8 values) summed in order after the lanes ----------

struct F32Row {
  static constexpr int kBytes = 4;
  static __m256 load(const uint8_t* w, int64_t i) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(w) + i);
  }
  // Rows need not be 4-byte aligned (a safetensors tensor starts wherever its header ends).
  static float at(const uint8_t* w, int64_t i) {
    float v;
    std::memcpy(&v, w + 4 * i, sizeof v);
    return v;
  }
};
struct F16Row {
  static constexpr int kBytes = 2;
  static __m256 load(const uint8_t* w, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i)));
  }
  static float at(const uint8_t* w, int64_t i) { return load_f16(w + 2 * i); }
};
struct BF16Row {
  static constexpr int kBytes = 2;
  static __m256 load(const uint8_t* w, int64_t i) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float at(const uint8_t* w, int64_t i) {
    uint16_t h;
    std::memcpy(&h, w + 2 * i, 2);
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// One accumulator per output, summed by hsum, then the tail in order: the same whatever the tile's shape.
// The loops over rows and tokens are unrolled by pragma so that `acc` lives in registers (see the AVX-512
// kernel).
template <typename Row, int R, int C>
void float_tile(const Tile& t) {
  __m256 acc[R * C];
#pragma GCC unroll 16
  for (int k = 0; k < R * C; ++k) acc[k] = _mm256_setzero_ps();
  const uint8_t* w[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) w[r] = row(t, r);
  const float* x[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) x[c] = token<float>(t, c);
  const int64_t n8 = t.n - t.n % 8;
  for (int64_t i = 0; i < n8; i += 8) {
    __m256 xv[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) xv[c] = _mm256_loadu_ps(x[c] + i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + i * Row::kBytes + kPrefetchBytes), _MM_HINT_T0);
      const __m256 wv = Row::load(w[r], i);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[r * C + c] = _mm256_fmadd_ps(wv, xv[c], acc[r * C + c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      float sum = hsum(acc[r * C + c]);
      for (int64_t i = n8; i < t.n; ++i) sum += Row::at(w[r], i) * x[c][i];
      t.y[c * t.y_stride + r] = sum;
    }
  }
}

// Tiles up to kMaxFloatRows x kMaxFloatCols (gemm.h), in passes of at most kFloatCols tokens: with 16
// registers, 6 rows x 2 tokens of accumulators plus the step's loads is what fits.
constexpr int kFloatCols = 2;

template <typename Row>
void float_dispatch(const Tile& t) {
  static_assert(kMaxFloatRows == 6, "the table below lists every row count");
  using Fn = void (*)(const Tile&);
  static constexpr Fn table[kMaxFloatRows][kFloatCols] = {
      {float_tile<Row, 1, 1>, float_tile<Row, 1, 2>}, {float_tile<Row, 2, 1>, float_tile<Row, 2, 2>},
      {float_tile<Row, 3, 1>, float_tile<Row, 3, 2>}, {float_tile<Row, 4, 1>, float_tile<Row, 4, 2>},
      {float_tile<Row, 5, 1>, float_tile<Row, 5, 2>}, {float_tile<Row, 6, 1>, float_tile<Row, 6, 2>},
  };
  for (int c0 = 0; c0 < t.cols; c0 += kFloatCols) {
    Tile part = t;
    part.x = token<float>(t, c0);
    part.cols = t.cols - c0 < kFloatCols ? t.cols - c0 : kFloatCols;
    part.y = t.y + c0 * t.y_stride;
    table[t.rows - 1][part.cols - 1](part);
  }
}

// --- Integer weights with Q8 activations -----------------------------------------------------------------

// unsigned x signed 8-bit products summed per 32-bit lane: pairs into 16 bits (maddubs), then into 32.
inline __m256i dot_u8s8(__m256i u, __m256i s, __m256i init) {
  return _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

#include "kernels/cpu/gemm_int_tiles.inc"

// --- Packed Q4_0 (gemm.h): a 256-bit register holds 8 rows of a group, 4 bytes each ------------------------

// One group's tile in two halves of 8 rows. maddubs adds two nibble x int8 products into 16 bits
// (|sum| <= 2 * 15 * 127); the 8 products of a block's 4-byte groups are added in 16 bits (at most
// 16 * 15 * 127 = 30480, no overflow) and widened once. The integer dot product is exact, then
// float(dot) * (dw * dx) is accumulated with one fma per block, as the AVX-512 kernel does: both levels
// give the same bits.
template <int C>
void q4_0_packed_tile(const PackedTile& t) {
  const int64_t nb = t.n / 32;
  const uint8_t* scales = t.w + 256 * nb;
  const __m256i mask = _mm256_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[2][C];
  for (int h = 0; h < 2; ++h)
    for (int c = 0; c < C; ++c) acc[h][c] = _mm256_setzero_ps();
  const Q8OffsetBlock* x[C];
  for (int c = 0; c < C; ++c)
    x[c] = reinterpret_cast<const Q8OffsetBlock*>(reinterpret_cast<const uint8_t*>(t.x) + c * t.x_stride);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* q = t.w + 256 * b;
    for (int k = 0; k < 4; ++k)
      _mm_prefetch(reinterpret_cast<const char*>(q + 64 * k + kPrefetchBytes), _MM_HINT_T0);
    for (int h = 0; h < 2; ++h) {
      const __m256 dw =
          _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 32 * b + 16 * h)));
      __m256i lo[4], hi[4];
      for (int k = 0; k < 4; ++k) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 64 * k + 32 * h));
        lo[k] = _mm256_and_si256(v, mask);
        hi[k] = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
      }
      for (int c = 0; c < C; ++c) {
        const Q8OffsetBlock& xb = x[c][b];
        int32_t xq[8];
        std::memcpy(xq, xb.q, sizeof(xq));
        __m256i s = _mm256_maddubs_epi16(lo[0], _mm256_set1_epi32(xq[0]));
        for (int k = 1; k < 4; ++k)
          s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[k], _mm256_set1_epi32(xq[k])));
        for (int k = 0; k < 4; ++k)
          s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[k], _mm256_set1_epi32(xq[4 + k])));
        const __m256i dot = _mm256_add_epi32(_mm256_madd_epi16(s, ones), _mm256_set1_epi32(xb.offset));
        acc[h][c] =
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, _mm256_set1_ps(xb.d)), acc[h][c]);
      }
    }
  }
  for (int c = 0; c < C; ++c) {
    float* y = t.y + c * t.y_stride;
    if (t.rows == kPackRows) {
      _mm256_storeu_ps(y, acc[0][c]);
      _mm256_storeu_ps(y + 8, acc[1][c]);
    } else {
      float all[kPackRows];
      _mm256_storeu_ps(all, acc[0][c]);
      _mm256_storeu_ps(all + 8, acc[1][c]);
      std::memcpy(y, all, static_cast<size_t>(t.rows) * sizeof(float));
    }
  }
}

// Tiles wider than 4 tokens run as tiles of 4 (16 registers hold no more accumulators); each token's
// arithmetic is the same in any of them.
void q4_0_packed(const PackedTile& t) {
  static constexpr PackedTileFn kByCols[4] = {q4_0_packed_tile<1>, q4_0_packed_tile<2>, q4_0_packed_tile<3>,
                                              q4_0_packed_tile<4>};
  PackedTile part = t;
  for (int c0 = 0; c0 < t.cols; c0 += 4) {
    part.x = reinterpret_cast<const Q8OffsetBlock*>(reinterpret_cast<const uint8_t*>(t.x) + c0 * t.x_stride);
    part.y = t.y + c0 * t.y_stride;
    part.cols = t.cols - c0 < 4 ? t.cols - c0 : 4;
    kByCols[part.cols - 1](part);
  }
}

// --- Activation quantization: bit-identical to the scalar quantize_q8 (same products, nearest-even) -------

void quantize_q8(const float* x, Q8Block* out, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    __m256 v[4], a = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      a = _mm256_max_ps(a, _mm256_andnot_ps(sign, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    const float d = amax / 127.0f;
    const float inv = d >= kMinScale ? 1.0f / d : 0.0f;
    Q8Block& o = out[b];
    o.d = d;
    int32_t q[32];
    for (int k = 0; k < 4; ++k)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 8 * k),
                          _mm256_cvtps_epi32(_mm256_mul_ps(v[k], _mm256_set1_ps(inv))));
    int sums[2] = {0, 0};
    for (int j = 0; j < 32; ++j) {
      o.q[j] = static_cast<int8_t>(q[j]);
      sums[j / 16] += q[j];
    }
    o.sum[0] = static_cast<int16_t>(sums[0]);
    o.sum[1] = static_cast<int16_t>(sums[1]);
  }
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels kernels{float_dispatch<F32Row>,
                               float_dispatch<F16Row>,
                               float_dispatch<BF16Row>,
                               dispatch<Q8_0K>,
                               dispatch<Q4_0K>,
                               dispatch<Q4_KK>,
                               dispatch<Q6_KK>,
                               quantize_q8,
                               q4_0_packed,
                               nullptr};
  return kernels;
}

}  // namespace ariadne::cpu::gemm
