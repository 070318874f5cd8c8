// AVX-512 (F/BW/DQ/VL + VNNI) kernels of gemm.h. Compiled with -march=x86-64-v4 -mavx512vnni; see the
// include rule in isa.h.
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
inline float hsum(__m512 v) {
  return hsum(_mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1)));
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

// --- Float weights: 16 lanes per output, the tail loaded under a mask (zeros contribute nothing) ----------

struct F32Row {
  static constexpr int kBytes = 4;
  static __m512 load(const uint8_t* w, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(w) + i);
  }
};
struct F16Row {
  static constexpr int kBytes = 2;
  static __m512 load(const uint8_t* w, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(w) + i));
  }
};
struct BF16Row {
  static constexpr int kBytes = 2;
  static __m512 load(const uint8_t* w, int64_t i, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(w) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};

template <typename Row, int R, int C>
void float_tile(const Tile& t) {
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  const uint8_t* w[R];
  for (int r = 0; r < R; ++r) w[r] = row(t, r);
  const float* x[C];
  for (int c = 0; c < C; ++c) x[c] = token<float>(t, c);
  for (int64_t i = 0; i < t.n; i += 16) {
    const __mmask16 m = t.n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (t.n - i)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + i * Row::kBytes + kPrefetchBytes), _MM_HINT_T0);
      wv[r] = Row::load(w[r], i, m);
    }
    for (int c = 0; c < C; ++c) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x[c] + i);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) t.y[c * t.y_stride + r] = hsum(acc[r][c]);
}

// --- Integer weights with Q8 activations -----------------------------------------------------------------

// unsigned x signed 8-bit products summed per 32-bit lane (VNNI).
inline __m256i dot_u8s8(__m256i u, __m256i s, __m256i init) {
  return _mm256_dpbusd_epi32(init, u, s);
}

#include "kernels/cpu/gemm_int_tiles.inc"

// Q8_0 and Q4_0 at full width: two blocks per 512-bit product (64 multiply-adds per instruction), so the
// per-output work (product, convert, scale, accumulate) is paid once per 64 values. Blocks are paired
// (0,1), (2,3), ...; an odd last block runs with a zero upper half. Weights are made unsigned by an
// offset (Q8_0: w + 128 via the sign bit; Q4_0: the nibble itself) and the offset times sum(x) is taken
// back in the products' start value.

// Two 256-bit halves into one register.
inline __m512i join(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}
inline __m512 join(float lo, float hi) {
  return _mm512_insertf32x8(_mm512_set1_ps(lo), _mm256_set1_ps(hi), 1);
}

template <int R, int C, bool kQ4>
void wide_tile(const Tile& t) {
  constexpr size_t kBytes = kQ4 ? 18 : 34;
  constexpr int kOffset = kQ4 ? 8 : 128;
  __m512 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  const Q8Block* x[C];
  for (int c = 0; c < C; ++c) x[c] = token<Q8Block>(t, c);
  const int64_t nb = t.n / 32;
  auto weights = [](const uint8_t* block) {
    if constexpr (kQ4) {
      return unpack_nibbles(block + 2);
    } else {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
      return _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80)));
    }
  };
  auto xq = [](const Q8Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.q)); };
  for (int64_t b = 0; b < nb; b += 2) {
    const bool pair = b + 1 < nb;
    __m512i wq[R];
    __m512 dw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = row(t, r) + b * kBytes;
      prefetch(block);
      const __m256i lo = weights(block);
      wq[r] = join(lo, pair ? weights(block + kBytes) : _mm256_setzero_si256());
      dw[r] = join(load_f16(block), pair ? load_f16(block + kBytes) : 0.0f);
    }
    for (int c = 0; c < C; ++c) {
      const Q8Block& x0 = x[c][b];
      const Q8Block& x1 = x[c][pair ? b + 1 : b];
      const __m512i q = join(xq(x0), pair ? xq(x1) : _mm256_setzero_si256());
      const int s1 = pair ? x1.sum[0] + x1.sum[1] : 0;
      const __m512i init = _mm512_setr_epi32(-kOffset * (x0.sum[0] + x0.sum[1]), 0, 0, 0, 0, 0, 0, 0,
                                             -kOffset * s1, 0, 0, 0, 0, 0, 0, 0);
      const __m512 dx = join(x0.d, pair ? x1.d : 0.0f);
      for (int r = 0; r < R; ++r) {
        const __m512i dot = _mm512_dpbusd_epi32(init, wq[r], q);
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw[r], dx), acc[r][c]);
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) t.y[c * t.y_stride + r] = hsum(acc[r][c]);
}

template <int R, int C>
struct Q8_0Wide {
  static void run(const Tile& t) { wide_tile<R, C, false>(t); }
};
template <int R, int C>
struct Q4_0Wide {
  static void run(const Tile& t) { wide_tile<R, C, true>(t); }
};

// --- Activation quantization: bit-identical to the scalar quantize_q8 (same products, nearest-even) -------

void quantize_q8(const float* x, Q8Block* out, int64_t n) {
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const __m512 a = _mm512_max_ps(_mm512_andnot_ps(sign, v0), _mm512_andnot_ps(sign, v1));
    const float amax = _mm512_reduce_max_ps(a);
    const float d = amax / 127.0f;
    const float inv = d >= kMinScale ? 1.0f / d : 0.0f;
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, _mm512_set1_ps(inv)));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, _mm512_set1_ps(inv)));
    Q8Block& o = out[b];
    o.d = d;
    o.sum[0] = static_cast<int16_t>(_mm512_reduce_add_epi32(q0));
    o.sum[1] = static_cast<int16_t>(_mm512_reduce_add_epi32(q1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q + 16), _mm512_cvtsepi32_epi8(q1));
  }
}

template <int R, int C>
struct F32K {
  static void run(const Tile& t) { float_tile<F32Row, R, C>(t); }
};
template <int R, int C>
struct F16K {
  static void run(const Tile& t) { float_tile<F16Row, R, C>(t); }
};
template <int R, int C>
struct BF16K {
  static void run(const Tile& t) { float_tile<BF16Row, R, C>(t); }
};

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels kernels{dispatch<F32K>,     dispatch<F16K>,  dispatch<BF16K>, dispatch<Q8_0Wide>,
                               dispatch<Q4_0Wide>, dispatch<Q4_KK>, dispatch<Q6_KK>, quantize_q8};
  return kernels;
}

}  // namespace ariadne::cpu::gemm
