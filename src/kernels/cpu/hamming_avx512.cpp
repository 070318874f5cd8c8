// AVX-512 VPOPCNTDQ scoring for hamming.h, compiled with -march=x86-64-v4 -mavx512vpopcntdq and called only
// when the CPU reports VPOPCNTDQ. Plain declarations only (isa.h's rule for per-level files).
//
// Eight keys per step: their codes fill words/1 .. words/4 vectors; each query code of the group is
// broadcast to the same word pattern, XORed and popcounted per 64-bit lane, and the lanes of one key are
// summed by even/odd lane permutes, so the eight sums come out in key order.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/hamming.h"

namespace ariadne::cpu::hamming_avx512 {
namespace {

// Lanes (0, 2, ..., 14) and (1, 3, ..., 15) of the 16 lanes of (a, b): a + b folds word pairs of a key.
__m512i fold_pairs(__m512i a, __m512i b) {
  const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_add_epi64(_mm512_permutex2var_epi64(a, even, b), _mm512_permutex2var_epi64(a, odd, b));
}

void store8(__m512i sums, uint32_t* out) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm512_cvtepi64_epi32(sums));
}

// norm * float(full - 2 sum) for eight keys (hamming_group_weighted).
__m256 weigh8(__m512i sums, const uint16_t* norm, __m256i full) {
  const __m256i t = _mm256_sub_epi32(full, _mm256_slli_epi32(_mm512_cvtepi64_epi32(sums), 1));
  const __m256 nv = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(norm)));
  return _mm256_mul_ps(nv, _mm256_cvtepi32_ps(t));
}

// The lines 4 KiB ahead of key block i are asked for into L2: a decode step reads each head's codes once,
// from memory, and one core needs more misses in flight than its loads alone keep.
constexpr int64_t kAhead = 4096 / sizeof(uint64_t);
void prefetch_ahead(const uint64_t* ki, int64_t i, int64_t n, int64_t words) {
  if (i * words + kAhead < n * words)
    for (int64_t w = 0; w < 8 * words; w += 8)
      _mm_prefetch(reinterpret_cast<const char*>(ki + kAhead + w), _MM_HINT_T1);
}

// Eight keys k[0..8) of `words` words each (1, 2 or 4).
__m512i block8(const uint64_t* q, int64_t n_q, const uint64_t* k, int64_t words) {
  if (words == 1) {
    const __m512i kv = _mm512_loadu_si512(k);
    __m512i acc = _mm512_setzero_si512();
    for (int64_t h = 0; h < n_q; ++h)
      acc = _mm512_add_epi64(
          acc, _mm512_popcnt_epi64(_mm512_xor_si512(kv, _mm512_set1_epi64(static_cast<long long>(q[h])))));
    return acc;
  }
  if (words == 2) {
    const __m512i a = _mm512_loadu_si512(k), b = _mm512_loadu_si512(k + 8);
    __m512i acc_a = _mm512_setzero_si512(), acc_b = _mm512_setzero_si512();
    for (int64_t h = 0; h < n_q; ++h) {
      const __m512i qv = _mm512_broadcast_i64x2(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 2 * h)));
      acc_a = _mm512_add_epi64(acc_a, _mm512_popcnt_epi64(_mm512_xor_si512(a, qv)));
      acc_b = _mm512_add_epi64(acc_b, _mm512_popcnt_epi64(_mm512_xor_si512(b, qv)));
    }
    return fold_pairs(acc_a, acc_b);
  }
  // words == 4
  const __m512i a = _mm512_loadu_si512(k), b = _mm512_loadu_si512(k + 8);
  const __m512i c = _mm512_loadu_si512(k + 16), d = _mm512_loadu_si512(k + 24);
  __m512i acc_a = _mm512_setzero_si512(), acc_b = _mm512_setzero_si512();
  __m512i acc_c = _mm512_setzero_si512(), acc_d = _mm512_setzero_si512();
  for (int64_t h = 0; h < n_q; ++h) {
    const __m512i qv =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 4 * h)));
    acc_a = _mm512_add_epi64(acc_a, _mm512_popcnt_epi64(_mm512_xor_si512(a, qv)));
    acc_b = _mm512_add_epi64(acc_b, _mm512_popcnt_epi64(_mm512_xor_si512(b, qv)));
    acc_c = _mm512_add_epi64(acc_c, _mm512_popcnt_epi64(_mm512_xor_si512(c, qv)));
    acc_d = _mm512_add_epi64(acc_d, _mm512_popcnt_epi64(_mm512_xor_si512(d, qv)));
  }
  return fold_pairs(fold_pairs(acc_a, acc_b), fold_pairs(acc_c, acc_d));
}

}  // namespace

void group(const uint64_t* q, int64_t n_q, const uint64_t* k, int64_t n, int64_t words, uint32_t* out) {
  if (words % 8 == 0) {
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t* ki = k + i * words;
      __m512i acc = _mm512_setzero_si512();
      for (int64_t w = 0; w < words; w += 8) {
        const __m512i kv = _mm512_loadu_si512(ki + w);
        for (int64_t h = 0; h < n_q; ++h)
          acc = _mm512_add_epi64(
              acc, _mm512_popcnt_epi64(_mm512_xor_si512(kv, _mm512_loadu_si512(q + h * words + w))));
      }
      out[i] = static_cast<uint32_t>(_mm512_reduce_add_epi64(acc));
    }
    return;
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t* ki = k + i * words;
    prefetch_ahead(ki, i, n, words);
    store8(block8(q, n_q, ki, words), out + i);
  }
  if (i < n) {  // the last keys, zero-padded to a block of eight
    uint64_t tail[32] = {};
    uint32_t sums[8];
    std::memcpy(tail, k + i * words, static_cast<size_t>((n - i) * words) * sizeof(uint64_t));
    store8(block8(q, n_q, tail, words), sums);
    std::memcpy(out + i, sums, static_cast<size_t>(n - i) * sizeof(uint32_t));
  }
}

void group_weighted(const uint64_t* q, int64_t n_q, const uint64_t* k, const uint16_t* norm, int64_t n,
                    int64_t words, int32_t full, float* out) {
  const __m256i fv = _mm256_set1_epi32(full);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t* ki = k + i * words;
    prefetch_ahead(ki, i, n, words);
    _mm256_storeu_ps(out + i, weigh8(block8(q, n_q, ki, words), norm + i, fv));
  }
  if (i < n) {  // the last keys, zero-padded to a block of eight
    uint64_t tail[32] = {};
    uint16_t tail_norm[8] = {};
    float res[8];
    std::memcpy(tail, k + i * words, static_cast<size_t>((n - i) * words) * sizeof(uint64_t));
    std::memcpy(tail_norm, norm + i, static_cast<size_t>(n - i) * sizeof(uint16_t));
    _mm256_storeu_ps(res, weigh8(block8(q, n_q, tail, words), tail_norm, fv));
    std::memcpy(out + i, res, static_cast<size_t>(n - i) * sizeof(float));
  }
}

}  // namespace ariadne::cpu::hamming_avx512
