#include "kernels/cpu/topk.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace ariadne::cpu {

namespace {

// The entries that compete: [lo, hi); the rest are forced.
struct Split {
  int64_t lo, hi, quota;  // quota: how many of [lo, hi) to choose (0 <= quota <= hi - lo)
};

Split split(int64_t n, int64_t n_sink, int64_t n_recent, int64_t k) {
  Split s;
  s.lo = std::clamp<int64_t>(n_sink, 0, n);
  s.hi = std::max(s.lo, n - std::clamp<int64_t>(n_recent, 0, n));
  const int64_t forced = n - (s.hi - s.lo);
  s.quota = std::clamp<int64_t>(k - forced, 0, s.hi - s.lo);
  return s;
}

// Writes forced prefix, the chosen middle (take(i) in ascending order), forced suffix.
template <typename Take>
int64_t emit(const Split& s, int64_t n, int32_t* out, Take&& take) {
  int64_t m = 0;
  for (int64_t i = 0; i < s.lo; ++i) out[m++] = static_cast<int32_t>(i);
  if (s.quota == s.hi - s.lo) {
    for (int64_t i = s.lo; i < s.hi; ++i) out[m++] = static_cast<int32_t>(i);
  } else if (s.quota > 0) {
    for (int64_t i = s.lo; i < s.hi; ++i)
      if (take(i)) out[m++] = static_cast<int32_t>(i);
  }
  for (int64_t i = s.hi; i < n; ++i) out[m++] = static_cast<int32_t>(i);
  return m;
}

// emit() for "key(i) < threshold, then the first `at_threshold` entries equal to it": branch-free on the
// common case; the few equal to the threshold take their turns by index.
template <typename Key>
int64_t emit_below(const Split& s, int64_t n, int32_t* out, int64_t at_threshold, uint32_t threshold,
                   Key&& key) {
  int64_t w = 0;
  for (int64_t i = 0; i < s.lo; ++i) out[w++] = static_cast<int32_t>(i);
  for (int64_t i = s.lo; i < s.hi; ++i) {
    const uint32_t v = key(i);
    out[w] = static_cast<int32_t>(i);
    if (v == threshold) {
      w += at_threshold > 0;
      at_threshold -= at_threshold > 0;
    } else {
      w += v < threshold;
    }
  }
  for (int64_t i = s.hi; i < n; ++i) out[w++] = static_cast<int32_t>(i);
  return w;
}

// A key that orders like -x (a NaN like -inf): the float's bits, sign-flipped so that unsigned order
// follows the float order, then complemented.
// Branch-free, so that the loops over it vectorise.
inline uint32_t descending_key(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  u = (u & 0x7fffffffu) > 0x7f800000u ? 0xff800000u : u;  // NaN -> -inf
  u = u == 0x80000000u ? 0u : u;                          // -0 -> +0
  const uint32_t flip = static_cast<uint32_t>(static_cast<int32_t>(u) >> 31) | 0x80000000u;
  return ~(u ^ flip);
}

}  // namespace

int64_t topk_smallest_u32(const uint32_t* score, int64_t n, uint32_t max_score, int64_t n_sink,
                          int64_t n_recent, int64_t k, int32_t* out, std::vector<uint32_t>& hist) {
  const Split s = split(n, n_sink, n_recent, k);
  if (s.quota == 0 || s.quota == s.hi - s.lo) return emit(s, n, out, [](int64_t) { return false; });
  // Four interleaved histograms: Hamming sums crowd into a few values, and neighbours counted into one
  // histogram would wait on each other's increments.
  const auto bins = static_cast<size_t>(max_score) + 1;
  hist.assign(4 * bins, 0);
  int64_t i = s.lo;
  for (; i + 4 <= s.hi; i += 4)
    for (int64_t j = 0; j < 4; ++j) ++hist[static_cast<size_t>(j) * bins + std::min(score[i + j], max_score)];
  for (; i < s.hi; ++i) ++hist[std::min(score[i], max_score)];
  uint32_t threshold = 0;  // chosen: every score < threshold, then the first `at_threshold` equal to it
  int64_t need = s.quota;
  for (;; ++threshold) {
    const int64_t c =
        hist[threshold] + hist[bins + threshold] + hist[2 * bins + threshold] + hist[3 * bins + threshold];
    if (need <= c) break;
    need -= c;
  }
  return emit_below(s, n, out, need, threshold, [&](int64_t j) { return std::min(score[j], max_score); });
}

int64_t topk_largest_f32(const float* score, int64_t n, int64_t n_sink, int64_t n_recent, int64_t k,
                         int32_t* out, std::vector<uint32_t>& scratch) {
  const Split s = split(n, n_sink, n_recent, k);
  if (s.quota == 0 || s.quota == s.hi - s.lo) return emit(s, n, out, [](int64_t) { return false; });
  // Radix select on keys that order like the scores, reversed (the smallest key is the largest score). The
  // keys are measured from their minimum and cut into digits of kBits from the top of their range, so even
  // scores packed into a narrow range spread over the bins; each level histograms the candidates left
  // (into four interleaved histograms: equal neighbours would otherwise wait on each other's increment) and
  // keeps the bin that holds the quota-th key. The threshold comes out exact, so ties are settled by index
  // as in the u32 path.
  constexpr int kBits = 11;
  constexpr uint32_t kBins = 1u << kBits;
  const int64_t m = s.hi - s.lo;
  scratch.resize(static_cast<size_t>(2 * m) + 4 * kBins);
  uint32_t* keys = scratch.data();  // [m]
  uint32_t* cand = keys + m;        // [m] (keys relative to lo_key) of the current bin
  uint32_t* hist = cand + m;        // [4][kBins]
  uint32_t lo_key = 0xffffffffu, hi_key = 0;
  for (int64_t i = 0; i < m; ++i) {
    const uint32_t key = descending_key(score[s.lo + i]);
    keys[i] = key;
    lo_key = std::min(lo_key, key);
    hi_key = std::max(hi_key, key);
  }
  for (int64_t i = 0; i < m; ++i) cand[i] = keys[i] - lo_key;
  int64_t n_cand = m;
  int64_t need = s.quota;  // keys to take from the candidates
  uint32_t prefix = 0;     // the threshold's digits found so far (relative to lo_key)
  int shift = std::max(0, static_cast<int>(std::bit_width(hi_key - lo_key)) - kBits);
  while (true) {
    std::fill(hist, hist + 4 * kBins, 0u);
    int64_t i = 0;
    for (; i + 4 <= n_cand; i += 4)
      for (int64_t j = 0; j < 4; ++j) ++hist[j * kBins + ((cand[i + j] >> shift) & (kBins - 1))];
    for (; i < n_cand; ++i) ++hist[(cand[i] >> shift) & (kBins - 1)];
    uint32_t bin = 0;
    for (;; ++bin) {
      const uint32_t c = hist[bin] + hist[kBins + bin] + hist[2 * kBins + bin] + hist[3 * kBins + bin];
      if (need <= c) break;
      need -= c;
    }
    prefix |= bin << shift;
    if (shift == 0) break;
    int64_t kept = 0;
    for (i = 0; i < n_cand; ++i) {
      const uint32_t c = cand[i];
      cand[kept] = c;
      kept += ((c >> shift) & (kBins - 1)) == bin;
    }
    n_cand = kept;
    shift = std::max(0, shift - kBits);
  }
  return emit_below(s, n, out, need, lo_key + prefix, [&](int64_t j) { return keys[j - s.lo]; });
}

}  // namespace ariadne::cpu
