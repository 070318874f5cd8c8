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
  static float at(const uint8_t* w, int64_t i) { return reinterpret_cast<const float*>(w)[i]; }
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

template <typename Row, int R, int C>
void float_tile(const Tile& t) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  const uint8_t* w[R];
  for (int r = 0; r < R; ++r) w[r] = row(t, r);
  const float* x[C];
  for (int c = 0; c < C; ++c) x[c] = token<float>(t, c);
  const int64_t n8 = t.n - t.n % 8;
  for (int64_t i = 0; i < n8; i += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w[r] + i * Row::kBytes + kPrefetchBytes), _MM_HINT_T0);
      wv[r] = Row::load(w[r], i);
    }
    for (int c = 0; c < C; ++c) {
      const __m256 xv = _mm256_loadu_ps(x[c] + i);
      for (int r = 0; r < R; ++r) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float sum = hsum(acc[r][c]);
      for (int64_t i = n8; i < t.n; ++i) sum += Row::at(w[r], i) * x[c][i];
      t.y[c * t.y_stride + r] = sum;
    }
  }
}

// --- Integer weights with Q8 activations -----------------------------------------------------------------

// unsigned x signed 8-bit products summed per 32-bit lane: pairs into 16 bits (maddubs), then into 32.
inline __m256i dot_u8s8(__m256i u, __m256i s, __m256i init) {
  return _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

#include "kernels/cpu/gemm_int_tiles.inc"

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

const Kernels& avx2_kernels() {
  static const Kernels kernels{dispatch<F32K>,  dispatch<F16K>,  dispatch<BF16K>, dispatch<Q8_0K>,
                               dispatch<Q4_0K>, dispatch<Q4_KK>, dispatch<Q6_KK>, quantize_q8};
  return kernels;
}

}  // namespace ariadne::cpu::gemm
