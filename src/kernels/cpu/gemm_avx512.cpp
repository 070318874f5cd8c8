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
  static __m512 load(const uint8_t* w, int64_t i) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(w) + i);
  }
  static __m512 load(const uint8_t* w, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(w) + i);
  }
};
struct F16Row {
  static constexpr int kBytes = 2;
  static __m512 load(const uint8_t* w, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * i)));
  }
  static __m512 load(const uint8_t* w, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(w) + i));
  }
};
struct BF16Row {
  static constexpr int kBytes = 2;
  static __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 load(const uint8_t* w, int64_t i) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * i)));
  }
  static __m512 load(const uint8_t* w, int64_t i, __mmask16 m) {
    return widen(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(w) + i));
  }
};

// Software prefetch of the weights for one token (decode): memory-bound, every row read once. Each 64-byte
// line is asked for twice, into L1 kDecodeNear bytes ahead and into L2 kDecodeFar bytes ahead, so more lines
// are in flight than the L1 fill buffers allow; the hardware prefetchers stop at every 4 KiB page. Measured
// on the 2-core development VM: 23 GB/s with one L1 prefetch 1 KiB ahead, 28 GB/s with both. Tiles of
// several tokens read their rows from L2 (matmul.cpp sweeps a panel per token group) and prefetch nothing.
constexpr int kDecodeNear = 1024;
constexpr int kDecodeFar = 4096;

// One step: values i..i+15 of every row and token of the tile (under mask m when kTail). Holds the smaller
// side of the tile in registers (R converted weight vectors reused by C tokens, or C token vectors reused by
// R rows) and streams the other.
template <typename Row, int R, int C, bool kTail>
[[gnu::always_inline]] inline void float_step(__m512 (&acc)[R * C], const uint8_t* const (&w)[R],
                                              const float* const (&x)[C], int64_t i, __mmask16 m) {
  auto weights = [&](int r) { return kTail ? Row::load(w[r], i, m) : Row::load(w[r], i); };
  auto tokens = [&](int c) { return kTail ? _mm512_maskz_loadu_ps(m, x[c] + i) : _mm512_loadu_ps(x[c] + i); };
  if constexpr (R <= C) {
    __m512 wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) wv[r] = weights(r);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m512 xv = tokens(c);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[r * C + c] = _mm512_fmadd_ps(wv[r], xv, acc[r * C + c]);
    }
  } else {
    __m512 xv[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) xv[c] = tokens(c);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 wv = weights(r);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[r * C + c] = _mm512_fmadd_ps(wv, xv[c], acc[r * C + c]);
    }
  }
}

// One accumulator per output, advanced 16 values at a time in row order, the tail under a mask, summed by
// hsum at the end: the same operations whatever the tile's shape. The loops over rows and tokens are
// unrolled by pragma: left to GCC 12's later unrolling, `acc` stays an array in memory and every step stores
// all R x C accumulators to the stack, one 64-byte store per FMA.
template <typename Row, int R, int C>
void float_tile(const Tile& t) {
  constexpr int kLine = 64 / Row::kBytes;  // values per cache line of weights: one or two steps
  __m512 acc[R * C];
#pragma GCC unroll 32
  for (int k = 0; k < R * C; ++k) acc[k] = _mm512_setzero_ps();
  const uint8_t* w[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) w[r] = row(t, r);
  const float* x[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) x[c] = token<float>(t, c);
  int64_t i = 0;
  for (; i + kLine <= t.n; i += kLine) {
    if constexpr (C == 1) {
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        _mm_prefetch(reinterpret_cast<const char*>(w[r] + i * Row::kBytes + kDecodeNear), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(w[r] + i * Row::kBytes + kDecodeFar), _MM_HINT_T1);
      }
    }
#pragma GCC unroll 2
    for (int s = 0; s < kLine; s += 16) float_step<Row, R, C, false>(acc, w, x, i + s, 0);
  }
  for (; i + 16 <= t.n; i += 16) float_step<Row, R, C, false>(acc, w, x, i, 0);
  if (i < t.n) float_step<Row, R, C, true>(acc, w, x, i, static_cast<__mmask16>((1u << (t.n - i)) - 1));
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) t.y[c * t.y_stride + r] = hsum(acc[r * C + c]);
}

// Tiles up to kMaxFloatRows x kMaxFloatCols (gemm.h).
template <typename Row>
void float_dispatch(const Tile& t) {
  static_assert(kMaxFloatRows == 6 && kMaxFloatCols == 4, "the table below lists every tile shape");
  using Fn = void (*)(const Tile&);
  static constexpr Fn table[kMaxFloatRows][kMaxFloatCols] = {
      {float_tile<Row, 1, 1>, float_tile<Row, 1, 2>, float_tile<Row, 1, 3>, float_tile<Row, 1, 4>},
      {float_tile<Row, 2, 1>, float_tile<Row, 2, 2>, float_tile<Row, 2, 3>, float_tile<Row, 2, 4>},
      {float_tile<Row, 3, 1>, float_tile<Row, 3, 2>, float_tile<Row, 3, 3>, float_tile<Row, 3, 4>},
      {float_tile<Row, 4, 1>, float_tile<Row, 4, 2>, float_tile<Row, 4, 3>, float_tile<Row, 4, 4>},
      {float_tile<Row, 5, 1>, float_tile<Row, 5, 2>, float_tile<Row, 5, 3>, float_tile<Row, 5, 4>},
      {float_tile<Row, 6, 1>, float_tile<Row, 6, 2>, float_tile<Row, 6, 3>, float_tile<Row, 6, 4>},
  };
  table[t.rows - 1][t.cols - 1](t);
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

// Blocks b and b + 1 of a Q4_0 or Q8_0 row for one 512-bit step: their weights as unsigned bytes (Q4_0's
// nibbles; Q8_0's w + 128, the sign bit flipped) and their scales, each over its half. No block b + 1
// (pair false): that half is zeros.
template <bool kQ4>
[[gnu::always_inline]] inline void weight_pair(const uint8_t* block, bool pair, __m512i& wq, __m512& dw) {
  constexpr size_t kBytes = kQ4 ? 18 : 34;
  auto weights = [](const uint8_t* b) {
    if constexpr (kQ4) {
      return unpack_nibbles(b + 2);
    } else {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
      return _mm256_xor_si256(w, _mm256_set1_epi8(static_cast<char>(0x80)));
    }
  };
  wq = join(weights(block), pair ? weights(block + kBytes) : _mm256_setzero_si256());
  dw = join(load_f16(block), pair ? load_f16(block + kBytes) : 0.0f);
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
  auto xq = [](const Q8Block& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.q)); };
  for (int64_t b = 0; b < nb; b += 2) {
    const bool pair = b + 1 < nb;
    __m512i wq[R];
    __m512 dw[R];
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = row(t, r) + b * kBytes;
      prefetch(block);
      // One token: memory-bound like the float decode above, so the line is also asked into L2 further ahead.
      if constexpr (C == 1) _mm_prefetch(reinterpret_cast<const char*>(block + kDecodeFar), _MM_HINT_T1);
      weight_pair<kQ4>(block, pair, wq[r], dw[r]);
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

// Q8_0 for one token from Q8Pairs (gemm.h): wide_tile<R, 1, false>'s operations on the same values in the
// same order, so the results are the same bits, but the token's side of each step (its 64 quants, the
// offset's start, its scales) is three loads instead of being assembled from two Q8Blocks in every row.
// Decode reads every weight once and is bound by memory and by the instructions between the loads.
template <int R>
void q8_0_pairs_tile(const Tile& t) {
  constexpr size_t kBytes = 34;
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  const auto* x = static_cast<const Q8Pair*>(t.x);
  const int64_t nb = t.n / 32;
  for (int64_t b = 0; b < nb; b += 2) {
    const bool pair = b + 1 < nb;
    const Q8Pair& xp = x[b / 2];
    const __m512i q = _mm512_loadu_si512(xp.q);
    const __m512i start = _mm512_loadu_si512(xp.start);
    const __m512 dx = _mm512_loadu_ps(xp.d);
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = row(t, r) + b * kBytes;
      prefetch(block);
      _mm_prefetch(reinterpret_cast<const char*>(block + kDecodeFar), _MM_HINT_T1);
      __m512i wq;
      __m512 dw;
      weight_pair<false>(block, pair, wq, dw);
      const __m512i dot = _mm512_dpbusd_epi32(start, wq, q);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, dx), acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) t.y[r] = hsum(acc[r]);
}

void q8_0_pairs(const Tile& t) {
  static_assert(kMaxRows == 4, "one kernel per tile height");
  static constexpr TileFn kByRows[kMaxRows] = {q8_0_pairs_tile<1>, q8_0_pairs_tile<2>, q8_0_pairs_tile<3>,
                                               q8_0_pairs_tile<4>};
  kByRows[t.rows - 1](t);
}

template <int R, int C>
struct Q8_0Wide {
  static void run(const Tile& t) { wide_tile<R, C, false>(t); }
};
template <int R, int C>
struct Q4_0Wide {
  static void run(const Tile& t) { wide_tile<R, C, true>(t); }
};

// --- Packed Q4_0 (gemm.h): the 16 lanes of a register are the 16 rows of a group ------------------------

// Per block, the group's 256 nibble bytes give 8 registers (low / high nibbles of 4 chunks: values 4k..4k+3
// and 16+4k..16+4k+3 of every row), reused by every token of the tile; a token's 4 bytes of each chunk are
// broadcast from memory, and its offset starts the dot product. Two chains of 4 products per token (low and
// high nibbles) keep more instructions in flight; the integer sum is exact whichever way it is split. Then
// one fma per block and 16 rows: acc += float(dot) * (dw * dx), as the AVX2 kernel does.
inline __m512i broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <int C>
void q4_0_packed_tile(const PackedTile& t) {
  const int64_t nb = t.n / 32;
  const uint8_t* scales = t.w + 256 * nb;
  const __m512i mask = _mm512_set1_epi8(0x0f);
  __m512 acc[C];
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  const Q8OffsetBlock* x[C];
  for (int c = 0; c < C; ++c)
    x[c] = reinterpret_cast<const Q8OffsetBlock*>(reinterpret_cast<const uint8_t*>(t.x) + c * t.x_stride);
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* q = t.w + 256 * b;
    __m512i lo[4], hi[4];
    for (int k = 0; k < 4; ++k) {
      _mm_prefetch(reinterpret_cast<const char*>(q + 64 * k + kPrefetchBytes), _MM_HINT_T0);
      if constexpr (C == 1) _mm_prefetch(reinterpret_cast<const char*>(q + 64 * k + kDecodeFar), _MM_HINT_T1);
      const __m512i v = _mm512_loadu_si512(q + 64 * k);
      lo[k] = _mm512_and_si512(v, mask);
      hi[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales + 32 * b)));
    for (int c = 0; c < C; ++c) {
      const Q8OffsetBlock& xb = x[c][b];
      __m512i dot_lo = _mm512_set1_epi32(xb.offset);
      __m512i dot_hi = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        dot_lo = _mm512_dpbusd_epi32(dot_lo, lo[k], broadcast4(xb.q + 4 * k));
        dot_hi = _mm512_dpbusd_epi32(dot_hi, hi[k], broadcast4(xb.q + 16 + 4 * k));
      }
      const __m512i dot = _mm512_add_epi32(dot_lo, dot_hi);
      acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(xb.d)), acc[c]);
    }
  }
  const __mmask16 rows = static_cast<__mmask16>((1u << t.rows) - 1);
  for (int c = 0; c < C; ++c) _mm512_mask_storeu_ps(t.y + c * t.y_stride, rows, acc[c]);
}

void q4_0_packed(const PackedTile& t) {
  static_assert(kMaxPackedCols == 8, "one kernel per tile width");
  static constexpr PackedTileFn kByCols[kMaxPackedCols] = {
      q4_0_packed_tile<1>, q4_0_packed_tile<2>, q4_0_packed_tile<3>, q4_0_packed_tile<4>,
      q4_0_packed_tile<5>, q4_0_packed_tile<6>, q4_0_packed_tile<7>, q4_0_packed_tile<8>};
  kByCols[t.cols - 1](t);
}

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

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels kernels{float_dispatch<F32Row>,
                               float_dispatch<F16Row>,
                               float_dispatch<BF16Row>,
                               dispatch<Q8_0Wide>,
                               dispatch<Q4_0Wide>,
                               dispatch<Q4_KK>,
                               dispatch<Q6_KK>,
                               quantize_q8,
                               q4_0_packed,
                               q8_0_pairs};
  return kernels;
}

}  // namespace ariadne::cpu::gemm
