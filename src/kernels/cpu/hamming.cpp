#include "kernels/cpu/hamming.h"

#include <algorithm>

#include "core/error.h"
#include "core/half.h"
#include "kernels/cpu/isa.h"

namespace ariadne::cpu {

void hash_encode(const float* x, int64_t n, int64_t d, const float* w, int64_t r, uint64_t* codes,
                 float* proj) {
  ARIADNE_CHECK(r > 0 && r % 64 == 0, "hash_encode: r must be a positive multiple of 64");
  const int64_t words = r / 64;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    std::fill(proj, proj + r, 0.0f);
    // Vectorised across j; every proj[j] still adds its d terms in order.
    for (int64_t e = 0; e < d; ++e) {
      const float xe = xi[e];
      const float* we = w + e * r;
      for (int64_t j = 0; j < r; ++j) proj[j] += xe * we[j];
    }
    uint64_t* ci = codes + i * words;
    for (int64_t word = 0; word < words; ++word) {
      uint64_t bits = 0;
      for (int64_t b = 0; b < 64; ++b) bits |= static_cast<uint64_t>(proj[word * 64 + b] > 0.0f) << b;
      ci[word] = bits;
    }
  }
}

void hamming_group_scalar(const uint64_t* q, int64_t n_q, const uint64_t* k, int64_t n, int64_t words,
                          uint32_t* out) {
  if (words == 2) {  // r = 128, the default: one key's two words held in registers across the group
    for (int64_t i = 0; i < n; ++i) {
      const uint64_t k0 = k[2 * i], k1 = k[2 * i + 1];
      uint32_t sum = 0;
      for (int64_t h = 0; h < n_q; ++h)
        sum += static_cast<uint32_t>(__builtin_popcountll(q[2 * h] ^ k0) +
                                     __builtin_popcountll(q[2 * h + 1] ^ k1));
      out[i] = sum;
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t* ki = k + i * words;
    uint32_t sum = 0;
    for (int64_t h = 0; h < n_q; ++h)
      for (int64_t w = 0; w < words; ++w)
        sum += static_cast<uint32_t>(__builtin_popcountll(q[h * words + w] ^ ki[w]));
    out[i] = sum;
  }
}

void hamming_group_weighted_scalar(const uint64_t* q, int64_t n_q, const uint64_t* k, const uint16_t* norm,
                                   int64_t n, int64_t words, int32_t full, float* out) {
  constexpr int64_t kChunk = 256;
  uint32_t sum[kChunk];
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t m = std::min(kChunk, n - i0);
    hamming_group_scalar(q, n_q, k + i0 * words, m, words, sum);
    for (int64_t i = 0; i < m; ++i)
      out[i0 + i] = f16_to_f32(norm[i0 + i]) * static_cast<float>(full - 2 * static_cast<int32_t>(sum[i]));
  }
}

bool hamming_uses_vpopcntdq() {
#if defined(__x86_64__) && defined(ARIADNE_HAVE_X86_KERNELS)
  static const bool cpu_has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vpopcntdq") != 0;
  }();
  return cpu_has && active_isa() == Isa::Avx512;
#else
  return false;
#endif
}

void hamming_group(const uint64_t* q, int64_t n_q, const uint64_t* k, int64_t n, int64_t words,
                   uint32_t* out) {
#if defined(__x86_64__) && defined(ARIADNE_HAVE_X86_KERNELS)
  if (hamming_uses_vpopcntdq() && (words == 1 || words == 2 || words == 4 || words % 8 == 0)) {
    hamming_avx512::group(q, n_q, k, n, words, out);
    return;
  }
#endif
  hamming_group_scalar(q, n_q, k, n, words, out);
}

void hamming_group_weighted(const uint64_t* q, int64_t n_q, const uint64_t* k, const uint16_t* norm,
                            int64_t n, int64_t words, int32_t full, float* out) {
#if defined(__x86_64__) && defined(ARIADNE_HAVE_X86_KERNELS)
  if (hamming_uses_vpopcntdq() && (words == 1 || words == 2 || words == 4)) {
    hamming_avx512::group_weighted(q, n_q, k, norm, n, words, full, out);
    return;
  }
#endif
  hamming_group_weighted_scalar(q, n_q, k, norm, n, words, full, out);
}

}  // namespace ariadne::cpu
