// AVX2 + FMA + F16C tile primitives of the CPU attention kernel (attention_tiles.h), compiled with
// -march=x86-64-v3. Everything here has internal linkage, as isa.h requires of a per-level file.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/attention_tiles.h"

namespace ariadne::cpu::attention_tiles {
namespace {

constexpr int64_t kW = 8;  // floats per vector

// Lane i is all-ones when i < n.
__m256i first_lanes(int64_t n) {
  const int32_t k = n >= kW ? static_cast<int32_t>(kW) : static_cast<int32_t>(n);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Sum and max of the 8 lanes, in a fixed order.
float hsum(__m256 x) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

float hmax(__m256 x) {
  __m128 q = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  q = _mm_max_ps(q, _mm_movehl_ps(q, q));
  q = _mm_max_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

// exp(x) for x <= 0 (x = -inf gives 0); the same method as the AVX-512 file (Cephes' expf polynomial, 2^n
// in the exponent field, 0 below -87.7).
__m256 exp_nonpositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
  y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

float exp_nonpositive(float x) {
  return _mm_cvtss_f32(_mm256_castps256_ps128(exp_nonpositive(_mm256_set1_ps(x))));
}

// --- convert ----------------------------------------------------------------------------------------------

// 8 16-bit values from [e, min(e + 8, n)) of a row, zeros beyond (a partial vector is copied first, so
// nothing past the row is read).
__m128i load_u16(const uint8_t* row, int64_t e, int64_t n) {
  if (n - e >= kW) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * e));
  uint16_t tmp[kW] = {};
  std::memcpy(tmp, row + 2 * e, static_cast<size_t>(n - e) * 2);
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(tmp));
}

void convert(RowType type, const uint8_t* const* rows, int64_t n, int64_t d, int64_t ld, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* src = rows[i];
    float* out = dst + i * ld;
    int64_t e = 0;
    switch (type) {
      case RowType::F32:
        for (; e < d; e += kW) {
          const auto* f = reinterpret_cast<const float*>(src);
          _mm256_storeu_ps(
              out + e, d - e >= kW ? _mm256_loadu_ps(f + e) : _mm256_maskload_ps(f + e, first_lanes(d - e)));
        }
        break;
      case RowType::F16:
        for (; e + kW <= d; e += kW)
          _mm256_storeu_ps(out + e,
                           _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * e))));
        for (; e < d; e += kW) _mm256_storeu_ps(out + e, _mm256_cvtph_ps(load_u16(src, e, d)));
        break;
      case RowType::BF16:
        for (; e < d; e += kW) {
          const __m256i x = _mm256_slli_epi32(_mm256_cvtepu16_epi32(load_u16(src, e, d)), 16);
          _mm256_storeu_ps(out + e, _mm256_castsi256_ps(x));
        }
        break;
      case RowType::Q8_0:
        // Blocks of 34 bytes: f16 scale, 32 int8; x = float(q) * scale as dequantize_row computes it.
        for (const uint8_t* block = src; e < d; e += 32, block += 34) {
          uint16_t h;
          std::memcpy(&h, block, 2);
          const __m256 scale = _mm256_set1_ps(_cvtsh_ss(h));
          for (int part = 0; part < 4; ++part) {
            const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(block + 2 + 8 * part));
            const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
            _mm256_storeu_ps(out + e + 8 * part, _mm256_mul_ps(x, scale));
          }
        }
        break;
    }
    for (; e < ld; e += kW) _mm256_storeu_ps(out + e, _mm256_setzero_ps());
  }
}

// --- dots ---------------------------------------------------------------------------------------------

// Sums the lanes of each of 8 vectors: result lane i = sum of a_i, every input through the same addition
// tree (pairs within 128-bit halves, then halves), so a dot product's value does not depend on its slot.
// Arguments by value, so the accumulators stay in registers.
[[gnu::always_inline]] inline __m256 pair_sum(__m256 x, __m256 y) {  // [x0+x2, y0+y2, x1+x3, y1+y3] per half
  return _mm256_add_ps(_mm256_unpacklo_ps(x, y), _mm256_unpackhi_ps(x, y));
}
[[gnu::always_inline]] inline __m256 quad_sum(__m256 x, __m256 y) {  // 4 sums per half from two pair_sums
  return _mm256_add_ps(_mm256_shuffle_ps(x, y, 0x44), _mm256_shuffle_ps(x, y, 0xee));
}
[[gnu::always_inline]] inline __m256 reduce8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                                             __m256 a6, __m256 a7) {
  const __m256 c0 = quad_sum(pair_sum(a0, a1), pair_sum(a2, a3));
  const __m256 c1 = quad_sum(pair_sum(a4, a5), pair_sum(a6, a7));
  return _mm256_add_ps(_mm256_permute2f128_ps(c0, c1, 0x20), _mm256_permute2f128_ps(c0, c1, 0x31));
}

// Lane r * Kb + j = dot(q[r], k[j]) for an Rb x Kb block (Rb * Kb = 8). The first step multiplies (the
// same value as an FMA into zero).
template <int Rb, int Kb>
__m256 dot_block(const float* const* q, const float* const* k, int64_t ld) {
  static_assert(Rb * Kb == 8);
  __m256 acc[8];
  {
    __m256 qv[Rb];
    for (int r = 0; r < Rb; ++r) qv[r] = _mm256_loadu_ps(q[r]);
    for (int j = 0; j < Kb; ++j) {
      const __m256 kv = _mm256_loadu_ps(k[j]);
      for (int r = 0; r < Rb; ++r) acc[r * Kb + j] = _mm256_mul_ps(qv[r], kv);
    }
  }
  for (int64_t e = kW; e < ld; e += kW) {
    __m256 qv[Rb];
    for (int r = 0; r < Rb; ++r) qv[r] = _mm256_loadu_ps(q[r] + e);
    for (int j = 0; j < Kb; ++j) {
      const __m256 kv = _mm256_loadu_ps(k[j] + e);
      for (int r = 0; r < Rb; ++r) acc[r * Kb + j] = _mm256_fmadd_ps(qv[r], kv, acc[r * Kb + j]);
    }
  }
  return reduce8(acc[0], acc[1], acc[2], acc[3], acc[4], acc[5], acc[6], acc[7]);
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
      const __m256 out = dot_block<Rb, Kb>(qr, kr, ld);
      float* dst = s + r0 * kKeyTile + j0;
      if constexpr (Rb == 1) {
        _mm256_storeu_ps(dst, out);
      } else if constexpr (Rb == 2) {
        _mm_storeu_ps(dst, _mm256_castps256_ps128(out));
        if (r0 + 1 < n_rows) _mm_storeu_ps(dst + kKeyTile, _mm256_extractf128_ps(out, 1));
      } else {
        const __m128 lo = _mm256_castps256_ps128(out), hi = _mm256_extractf128_ps(out, 1);
        _mm_storel_pi(reinterpret_cast<__m64*>(dst), lo);
        if (r0 + 1 < n_rows) _mm_storeh_pi(reinterpret_cast<__m64*>(dst + kKeyTile), lo);
        if (r0 + 2 < n_rows) _mm_storel_pi(reinterpret_cast<__m64*>(dst + 2 * kKeyTile), hi);
        if (r0 + 3 < n_rows) _mm_storeh_pi(reinterpret_cast<__m64*>(dst + 3 * kKeyTile), hi);
      }
    }
  }
}

void dots(const float* q, int64_t n_rows, const float* k, int64_t n_keys, int64_t ld, float* s) {
  if (n_rows >= 4)
    dots_blocked<4, 2>(q, n_rows, k, n_keys, ld, s);
  else if (n_rows >= 2)
    dots_blocked<2, 4>(q, n_rows, k, n_keys, ld, s);
  else
    dots_blocked<1, 8>(q, n_rows, k, n_keys, ld, s);
}

// --- softmax ------------------------------------------------------------------------------------------

void softmax(const SoftmaxArgs& a) {
  static_assert(kKeyTile % kW == 0);
  const __m256 neg_inf = _mm256_set1_ps(-__builtin_inff());
  const __m256 scale = _mm256_set1_ps(a.scale);
  const int64_t n_vec = (a.n_keys + kW - 1) / kW;
  for (int64_t r = 0; r < a.n_rows; ++r) {
    float* s = a.s + r * kKeyTile;
    const __m256i limit = _mm256_set1_epi32(a.row_limit[r]);
    __m256 x[kKeyTile / kW];
    __m256 vmax = neg_inf;
    for (int64_t b = 0; b < n_vec; ++b) {
      __m256 v = _mm256_loadu_ps(s + b * kW);
      v = a.bias != nullptr ? _mm256_fmadd_ps(v, scale, _mm256_loadu_ps(a.bias + b * kW))
                            : _mm256_mul_ps(v, scale);
      __m256i visible = first_lanes(a.n_keys - b * kW);
      if (a.key_pos != nullptr) {
        const __m256i pos = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.key_pos + b * kW));
        visible = _mm256_andnot_si256(_mm256_cmpgt_epi32(pos, limit), visible);
      }
      x[b] = _mm256_blendv_ps(neg_inf, v, _mm256_castsi256_ps(visible));
      vmax = _mm256_max_ps(vmax, x[b]);
    }
    const float tile_max = hmax(vmax);
    if (a.tile_max != nullptr) {  // masked lanes hold -inf: no match unless the row sees nothing
      int32_t arg = -1;
      const __m256 target = _mm256_set1_ps(tile_max);
      for (int64_t b = 0; b < n_vec && arg < 0; ++b) {
        const auto eq = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x[b], target, _CMP_EQ_OQ)));
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
    const __m256 mv = _mm256_set1_ps(m_new);
    __m256 sum = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_vec; ++b) {
      const __m256 p = exp_nonpositive(_mm256_sub_ps(x[b], mv));
      _mm256_storeu_ps(s + b * kW, p);
      sum = _mm256_add_ps(sum, p);
    }
    a.m[r] = m_new;
    a.l[r] = a.l[r] * alpha + hsum(sum);
    a.alpha[r] = alpha;
    a.active[r] = 1;
  }
}

// --- accumulate ---------------------------------------------------------------------------------------

// acc[r][e0, e0 + 8 Vb) = acc * alpha[r] + sum_j p[r][j] * v[j][...] for Rb rows.
template <int Rb, int Vb>
void accumulate_block(const float* const* p, const float* alpha, float* const* acc, const float* v,
                      int64_t ld, int64_t n_keys, int64_t e0) {
  __m256 o[Rb][Vb];
  for (int r = 0; r < Rb; ++r) {
    const __m256 al = _mm256_set1_ps(alpha[r]);
    for (int c = 0; c < Vb; ++c) o[r][c] = _mm256_mul_ps(_mm256_loadu_ps(acc[r] + e0 + c * kW), al);
  }
  for (int64_t j = 0; j < n_keys; ++j) {
    __m256 vv[Vb];
    for (int c = 0; c < Vb; ++c) vv[c] = _mm256_loadu_ps(v + j * ld + e0 + c * kW);
    for (int r = 0; r < Rb; ++r) {
      const __m256 pj = _mm256_broadcast_ss(p[r] + j);
      for (int c = 0; c < Vb; ++c) o[r][c] = _mm256_fmadd_ps(pj, vv[c], o[r][c]);
    }
  }
  for (int r = 0; r < Rb; ++r)
    for (int c = 0; c < Vb; ++c) _mm256_storeu_ps(acc[r] + e0 + c * kW, o[r][c]);
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
  for (; e0 + 2 * kW <= a.ld; e0 += 2 * kW) accumulate_block<Rb, 2>(p, alpha, acc, a.v, a.ld, a.n_keys, e0);
  if (e0 < a.ld) accumulate_block<Rb, 1>(p, alpha, acc, a.v, a.ld, a.n_keys, e0);
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

const TileKernels kAvx2Tiles{convert, dots, softmax, accumulate};

}  // namespace ariadne::cpu::attention_tiles
