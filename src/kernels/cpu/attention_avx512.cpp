// AVX-512 tile primitives of the CPU attention kernel (attention_tiles.h), compiled with -march=x86-64-v4.
// Everything here has internal linkage, as isa.h requires of a per-level file.
//
// GCC 12's AVX-512 headers initialise their "undefined" vectors from themselves (`__m512 __Y = __Y;`), which
// -Wuninitialized reports once the intrinsics are inlined (GCC bug 105593, fixed in 12.3/13).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/attention_tiles.h"

namespace ariadne::cpu::attention_tiles {
namespace {

constexpr int64_t kW = 16;  // floats per vector

__mmask16 first_lanes(int64_t n) {
  return n >= kW ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n) - 1u);
}

// Sum and max of the 16 lanes, in a fixed order (GCC 12's _mm512_reduce_* trips -Wmaybe-uninitialized).
float hsum(__m512 x) {
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

float hmax(__m512 x) {
  const __m256 h = _mm256_max_ps(_mm512_castps512_ps256(x),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(x), 1)));
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// exp(x) for x <= 0 (x = -inf gives 0): x = n ln2 + r with |r| <= ln2/2, e^r by the degree-7 polynomial of
// Cephes' expf (relative error ~1e-7), times 2^n built in the exponent field. Below -87.7 (where e^x is
// under FLT_MIN) the result is 0.
__m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r);
  y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
  // n in [-127, 0]: n = -127 makes the exponent field 0, i.e. the factor 0.
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

float exp_nonpositive(float x) {
  return _mm_cvtss_f32(_mm512_castps512_ps128(exp_nonpositive(_mm512_set1_ps(x))));
}

// --- convert ----------------------------------------------------------------------------------------------

// Lanes [e, e + 16) of a row of n values of the given type; lanes at or beyond n are 0 and never read.
__m512 load_f32(const uint8_t* row, int64_t e, int64_t n) {
  return _mm512_maskz_loadu_ps(first_lanes(n - e), row + 4 * e);
}
__m512 load_f16(const uint8_t* row, int64_t e, int64_t n) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_lanes(n - e), row + 2 * e));
}
__m512 load_bf16(const uint8_t* row, int64_t e, int64_t n) {
  const __m256i h = _mm256_maskz_loadu_epi16(first_lanes(n - e), row + 2 * e);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

void convert(RowType type, const uint8_t* const* rows, int64_t n, int64_t d, int64_t ld, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = rows[i];
    float* out = dst + i * ld;
    int64_t e = 0;
    switch (type) {
      case RowType::F32:
        for (; e + kW <= d; e += kW) _mm512_storeu_ps(out + e, _mm512_loadu_ps(src + 4 * e));
        for (; e < d; e += kW) _mm512_storeu_ps(out + e, load_f32(src, e, d));
        break;
      case RowType::F16:
        for (; e + kW <= d; e += kW)
          _mm512_storeu_ps(
              out + e, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + 2 * e))));
        for (; e < d; e += kW) _mm512_storeu_ps(out + e, load_f16(src, e, d));
        break;
      case RowType::BF16:
        for (; e < d; e += kW) _mm512_storeu_ps(out + e, load_bf16(src, e, d));
        break;
      case RowType::Q8_0:
        // Blocks of 34 bytes: f16 scale, 32 int8; x = float(q) * scale as dequantize_row computes it.
        for (const uint8_t* block = src; e < d; e += 32, block += 34) {
          uint16_t h;
          std::memcpy(&h, block, 2);
          const __m512 scale = _mm512_set1_ps(_cvtsh_ss(h));
          for (int half = 0; half < 2; ++half) {
            const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 2 + 16 * half));
            const __m512 x = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
            _mm512_storeu_ps(out + e + 16 * half, _mm512_mul_ps(x, scale));
          }
        }
        break;
    }
    for (; e < ld; e += kW) _mm512_storeu_ps(out + e, _mm512_setzero_ps());
  }
}

// --- dots ---------------------------------------------------------------------------------------------

// Sums the lanes of each of 16 vectors: result lane i = sum of a[i]. Every input goes through the same
// addition tree (pairs of lanes within 128-bit quarters, then quarters), so a dot product's value does not
// depend on its slot.
[[gnu::always_inline]] inline __m512 pair_sum(__m512 x,
                                              __m512 y) {  // [x0+x2, y0+y2, x1+x3, y1+y3] per quarter
  return _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
}
[[gnu::always_inline]] inline __m512 quad_sum(__m512 x, __m512 y) {  // 4 sums per quarter from two pair_sums
  return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x44), _mm512_shuffle_ps(x, y, 0xee));
}
[[gnu::always_inline]] inline __m512 quarter_sum(__m512 x, __m512 y) {  // adds quarters 0+1, 2+3 of x, then y
  return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xdd));
}
// Arguments by value, so the accumulators stay in registers.
[[gnu::always_inline]] inline __m512 reduce16(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4,
                                              __m512 a5, __m512 a6, __m512 a7, __m512 a8, __m512 a9,
                                              __m512 a10, __m512 a11, __m512 a12, __m512 a13, __m512 a14,
                                              __m512 a15) {
  const __m512 c0 = quad_sum(pair_sum(a0, a1), pair_sum(a2, a3));
  const __m512 c1 = quad_sum(pair_sum(a4, a5), pair_sum(a6, a7));
  const __m512 c2 = quad_sum(pair_sum(a8, a9), pair_sum(a10, a11));
  const __m512 c3 = quad_sum(pair_sum(a12, a13), pair_sum(a14, a15));
  return quarter_sum(quarter_sum(c0, c1), quarter_sum(c2, c3));
}

// Lane r * Kb + j = dot(q[r], k[j]) for an Rb x Kb block (Rb * Kb = 16). The first step multiplies (the
// same value as an FMA into zero), which spares zeroing 16 registers.
template <int Rb, int Kb>
__m512 dot_block(const float* const* q, const float* const* k, int64_t ld) {
  static_assert(Rb * Kb == 16);
  __m512 acc[16];
  {
    __m512 qv[Rb];
    for (int r = 0; r < Rb; ++r) qv[r] = _mm512_loadu_ps(q[r]);
    for (int j = 0; j < Kb; ++j) {
      const __m512 kv = _mm512_loadu_ps(k[j]);
      for (int r = 0; r < Rb; ++r) acc[r * Kb + j] = _mm512_mul_ps(qv[r], kv);
    }
  }
  for (int64_t e = kW; e < ld; e += kW) {
    __m512 qv[Rb];
    for (int r = 0; r < Rb; ++r) qv[r] = _mm512_loadu_ps(q[r] + e);
    for (int j = 0; j < Kb; ++j) {
      const __m512 kv = _mm512_loadu_ps(k[j] + e);
      for (int r = 0; r < Rb; ++r) acc[r * Kb + j] = _mm512_fmadd_ps(qv[r], kv, acc[r * Kb + j]);
    }
  }
  return reduce16(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7], acc[8], acc[9], acc[10],
                  acc[11], acc[12], acc[13], acc[14], acc[15]);
}

template <int Rb, int Kb>
void dots_blocked(const float* q, int64_t n_rows, const float* k, int64_t n_keys, int64_t ld, float* s) {
  for (int64_t r0 = 0; r0 < n_rows; r0 += Rb) {
    const float* qr[Rb];  // rows past the end repeat the last one; their results are dropped
    for (int r = 0; r < Rb; ++r) qr[r] = q + (r0 + r < n_rows ? r0 + r : n_rows - 1) * ld;
    for (int64_t j0 = 0; j0 < n_keys; j0 += Kb) {
      const float* kr[Kb];
      for (int j = 0; j < Kb; ++j) kr[j] = k + (j0 + j < n_keys ? j0 + j : n_keys - 1) * ld;
      // Whole rows of the block are stored: columns past n_keys stay inside the kKeyTile-wide score row.
      const __m512 out = dot_block<Rb, Kb>(qr, kr, ld);
      float* dst = s + r0 * kKeyTile + j0;
      if constexpr (Rb == 1) {
        _mm512_storeu_ps(dst, out);
      } else if constexpr (Rb == 2) {
        _mm256_storeu_ps(dst, _mm512_castps512_ps256(out));
        if (r0 + 1 < n_rows)
          _mm256_storeu_ps(dst + kKeyTile,
                           _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(out), 1)));
      } else {
        _mm_storeu_ps(dst, _mm512_castps512_ps128(out));
        if (r0 + 1 < n_rows) _mm_storeu_ps(dst + kKeyTile, _mm512_extractf32x4_ps(out, 1));
        if (r0 + 2 < n_rows) _mm_storeu_ps(dst + 2 * kKeyTile, _mm512_extractf32x4_ps(out, 2));
        if (r0 + 3 < n_rows) _mm_storeu_ps(dst + 3 * kKeyTile, _mm512_extractf32x4_ps(out, 3));
      }
    }
  }
}

void dots(const float* q, int64_t n_rows, const float* k, int64_t n_keys, int64_t ld, float* s) {
  if (n_rows >= 4)
    dots_blocked<4, 4>(q, n_rows, k, n_keys, ld, s);
  else if (n_rows >= 2)
    dots_blocked<2, 8>(q, n_rows, k, n_keys, ld, s);
  else
    dots_blocked<1, 16>(q, n_rows, k, n_keys, ld, s);
}

// --- softmax ------------------------------------------------------------------------------------------

void softmax(const SoftmaxArgs& a) {
  static_assert(kKeyTile % kW == 0);
  const __m512 neg_inf = _mm512_set1_ps(-__builtin_inff());
  const __m512 scale = _mm512_set1_ps(a.scale);
  const int64_t n_vec = (a.n_keys + kW - 1) / kW;
  for (int64_t r = 0; r < a.n_rows; ++r) {
    float* s = a.s + r * kKeyTile;
    const __m512i limit = _mm512_set1_epi32(a.row_limit[r]);
    __m512 x[kKeyTile / kW];
    __m512 vmax = neg_inf;
    for (int64_t b = 0; b < n_vec; ++b) {
      const __mmask16 valid = first_lanes(a.n_keys - b * kW);
      __m512 v = _mm512_loadu_ps(s + b * kW);
      v = a.bias != nullptr ? _mm512_fmadd_ps(v, scale, _mm512_loadu_ps(a.bias + b * kW))
                            : _mm512_mul_ps(v, scale);
      __mmask16 visible = valid;
      if (a.key_pos != nullptr) {
        const __m512i pos = _mm512_loadu_si512(a.key_pos + b * kW);
        visible &= static_cast<__mmask16>(~_mm512_cmpgt_epi32_mask(pos, limit));
      }
      x[b] = _mm512_mask_mov_ps(neg_inf, visible, v);
      vmax = _mm512_max_ps(vmax, x[b]);
    }
    const float tile_max = hmax(vmax);
    if (a.tile_max != nullptr) {  // masked lanes hold -inf: no match unless the row sees nothing
      int32_t arg = -1;
      const __m512 target = _mm512_set1_ps(tile_max);
      for (int64_t b = 0; b < n_vec && arg < 0; ++b) {
        const unsigned eq = _mm512_cmp_ps_mask(x[b], target, _CMP_EQ_OQ);
        if (eq != 0) arg = static_cast<int32_t>(b * kW + __builtin_ctz(eq));
      }
      a.tile_max[r] = tile_max;
      a.tile_argmax[r] = arg;
    }
    if (tile_max == -__builtin_inff()) {
      a.active[r] = 0;
      continue;
    }
    const float m_old = a.m[r];
    const float m_new = m_old > tile_max ? m_old : tile_max;
    const float alpha = exp_nonpositive(m_old - m_new);
    const __m512 mv = _mm512_set1_ps(m_new);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_vec; ++b) {
      const __m512 p = exp_nonpositive(_mm512_sub_ps(x[b], mv));
      _mm512_storeu_ps(s + b * kW, p);
      sum = _mm512_add_ps(sum, p);
    }
    a.m[r] = m_new;
    a.l[r] = a.l[r] * alpha + hsum(sum);
    a.alpha[r] = alpha;
    a.active[r] = 1;
  }
}

// --- accumulate ---------------------------------------------------------------------------------------

// acc[r][e0, e0 + 16 Vb) = acc * alpha[r] + sum_j p[r][j] * v[j][...] for Rb rows.
template <int Rb, int Vb>
void accumulate_block(const float* const* p, const float* alpha, float* const* acc, const float* v,
                      int64_t ld, int64_t n_keys, int64_t e0) {
  __m512 o[Rb][Vb];
  for (int r = 0; r < Rb; ++r) {
    const __m512 al = _mm512_set1_ps(alpha[r]);
    for (int c = 0; c < Vb; ++c) o[r][c] = _mm512_mul_ps(_mm512_loadu_ps(acc[r] + e0 + c * kW), al);
  }
  for (int64_t j = 0; j < n_keys; ++j) {
    __m512 vv[Vb];
    for (int c = 0; c < Vb; ++c) vv[c] = _mm512_loadu_ps(v + j * ld + e0 + c * kW);
    for (int r = 0; r < Rb; ++r) {
      const __m512 pj = _mm512_set1_ps(p[r][j]);
      for (int c = 0; c < Vb; ++c) o[r][c] = _mm512_fmadd_ps(pj, vv[c], o[r][c]);
    }
  }
  for (int r = 0; r < Rb; ++r)
    for (int c = 0; c < Vb; ++c) _mm512_storeu_ps(acc[r] + e0 + c * kW, o[r][c]);
}

template <int Rb>
void accumulate_rows(const AccumulateArgs& a, const int64_t* rows) {
  const float* p[Rb];
  float* acc[Rb];
  float alpha[Rb];
  for (int r = 0; r < Rb; ++r) {
    p[r] = a.p + rows[r] * kKeyTile;
    acc[r] = a.acc + rows[r] * a.ld;
    alpha[r] = a.alpha[rows[r]];
  }
  int64_t e0 = 0;
  for (; e0 + 4 * kW <= a.ld; e0 += 4 * kW) accumulate_block<Rb, 4>(p, alpha, acc, a.v, a.ld, a.n_keys, e0);
  switch ((a.ld - e0) / kW) {
    case 3:
      accumulate_block<Rb, 3>(p, alpha, acc, a.v, a.ld, a.n_keys, e0);
      break;
    case 2:
      accumulate_block<Rb, 2>(p, alpha, acc, a.v, a.ld, a.n_keys, e0);
      break;
    case 1:
      accumulate_block<Rb, 1>(p, alpha, acc, a.v, a.ld, a.n_keys, e0);
      break;
    default:
      break;
  }
}

void accumulate(const AccumulateArgs& a) {
  int64_t rows[4];
  int n = 0;
  for (int64_t r = 0; r < a.n_rows; ++r) {
    if (a.active[r] == 0) continue;
    rows[n++] = r;
    if (n == 4) {
      accumulate_rows<4>(a, rows);
      n = 0;
    }
  }
  if (n == 3) accumulate_rows<3>(a, rows);
  if (n == 2) accumulate_rows<2>(a, rows);
  if (n == 1) accumulate_rows<1>(a, rows);
}

}  // namespace

const TileKernels kAvx512Tiles{convert, dots, softmax, accumulate};

}  // namespace ariadne::cpu::attention_tiles
