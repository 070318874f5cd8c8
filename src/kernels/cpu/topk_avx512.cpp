// AVX-512 filter pass of topk.cpp's float select, compiled with -march=x86-64-v4 and called only when
// active_isa() is Avx512. Plain declarations only (isa.h's rule for per-level files).
//
// Sixteen scores per step: their descending keys (topk.cpp's order: a NaN as -inf, -0 as +0, complemented
// so that the largest score has the smallest key) are compared with the bound, and the passing keys and
// their indices are compressed to the front of a vector and stored whole; the write position advances by
// the number that passed.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/topk.h"

namespace ariadne::cpu::topk_avx512 {

namespace {

__m512i descending_keys(__m512 x) {
  __m512i u = _mm512_castps_si512(x);
  const __m512i abs = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f800000));
  u = _mm512_mask_mov_epi32(u, nan, _mm512_set1_epi32(static_cast<int>(0xff800000u)));
  const __mmask16 neg_zero = _mm512_cmpeq_epi32_mask(u, _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  u = _mm512_mask_mov_epi32(u, neg_zero, _mm512_setzero_si512());
  const __m512i flip =
      _mm512_or_si512(_mm512_srai_epi32(u, 31), _mm512_set1_epi32(static_cast<int>(0x80000000u)));
  return _mm512_xor_si512(_mm512_xor_si512(u, flip), _mm512_set1_epi32(-1));
}

}  // namespace

int64_t filter_keys(const float* score, int64_t m, uint32_t bound, uint32_t* ckey, uint32_t* cidx) {
  const __m512i bound_v = _mm512_set1_epi32(static_cast<int>(bound));
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i step = _mm512_set1_epi32(16);
  int64_t c = 0;
  for (int64_t i = 0; i < m; i += 16) {
    const auto lanes = static_cast<__mmask16>(m - i >= 16 ? 0xffff : (1u << (m - i)) - 1);
    const __m512i key = descending_keys(_mm512_maskz_loadu_ps(lanes, score + i));
    const __mmask16 pass = _mm512_mask_cmple_epu32_mask(lanes, key, bound_v);
    _mm512_storeu_si512(ckey + c, _mm512_maskz_compress_epi32(pass, key));
    _mm512_storeu_si512(cidx + c, _mm512_maskz_compress_epi32(pass, index));
    c += __builtin_popcount(pass);
    index = _mm512_add_epi32(index, step);
  }
  return c;
}

}  // namespace ariadne::cpu::topk_avx512
