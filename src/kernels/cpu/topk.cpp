#include "kernels/cpu/topk.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

#include "kernels/cpu/isa.h"

namespace ariadne::cpu {

namespace {

constexpr int kBits = 11;  // radix digit
constexpr uint32_t kBins = 1u << kBits;
// The float select samples, then filters, when at least this many entries compete (and at most a quarter
// of them are chosen); kSample evenly spaced keys set the filter's bound.
constexpr int64_t kFilterMin = 8192;
constexpr int64_t kSample = 1024;

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

// One entry of a threshold emit: index i is written at out[w] and kept (w advances) when its key is below
// the threshold, or equal to it while `at_threshold` equal ones are still wanted. Branch-free on the common
// case.
inline void take_below(int32_t* out, int64_t& w, int64_t i, uint32_t v, uint32_t threshold,
                       int64_t& at_threshold) {
  out[w] = static_cast<int32_t>(i);
  if (v == threshold) {
    w += at_threshold > 0;
    at_threshold -= at_threshold > 0;
  } else {
    w += v < threshold;
  }
}

// emit() for "key(i) < threshold, then the first `at_threshold` entries equal to it": branch-free on the
// common case; the few equal to the threshold take their turns by index.
template <typename Key>
int64_t emit_below(const Split& s, int64_t n, int32_t* out, int64_t at_threshold, uint32_t threshold,
                   Key&& key) {
  int64_t w = 0;
  for (int64_t i = 0; i < s.lo; ++i) out[w++] = static_cast<int32_t>(i);
  for (int64_t i = s.lo; i < s.hi; ++i) take_below(out, w, i, key(i), threshold, at_threshold);
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

// Radix select over keys[0, m): the quota-th smallest key (1 <= quota <= m), and in *need how many keys
// equal to it complete the quota after every smaller key. The keys are measured from their minimum and cut
// into digits of kBits from the top of their range, so even keys packed into a narrow range spread over the
// bins; each level histograms the candidates left (into four interleaved histograms: equal neighbours would
// otherwise wait on each other's increment) and keeps the bin that holds the quota-th key. Few keys get
// digits of 8 bits (clearing and scanning the bins would cost more than the keys). scratch: m + 4 kBins
// words.
uint32_t radix_threshold(const uint32_t* keys, int64_t m, int64_t quota, uint32_t* scratch,
                         int64_t* need_out) {
  const int bits = m < 16384 ? 8 : kBits;
  const uint32_t bins = 1u << bits;
  uint32_t* cand = scratch;   // [m] (keys relative to lo_key) of the current bin
  uint32_t* hist = cand + m;  // [4][bins]
  uint32_t lo_key = 0xffffffffu, hi_key = 0;
  for (int64_t i = 0; i < m; ++i) {
    lo_key = std::min(lo_key, keys[i]);
    hi_key = std::max(hi_key, keys[i]);
  }
  for (int64_t i = 0; i < m; ++i) cand[i] = keys[i] - lo_key;
  int64_t n_cand = m;
  int64_t need = quota;  // keys to take from the candidates
  uint32_t prefix = 0;   // the threshold's digits found so far (relative to lo_key)
  int shift = std::max(0, static_cast<int>(std::bit_width(hi_key - lo_key)) - bits);
  while (true) {
    std::fill(hist, hist + 4 * bins, 0u);
    int64_t i = 0;
    for (; i + 4 <= n_cand; i += 4)
      for (int64_t j = 0; j < 4; ++j) ++hist[j * bins + ((cand[i + j] >> shift) & (bins - 1))];
    for (; i < n_cand; ++i) ++hist[(cand[i] >> shift) & (bins - 1)];
    uint32_t bin = 0;
    for (;; ++bin) {
      const uint32_t c = hist[bin] + hist[bins + bin] + hist[2 * bins + bin] + hist[3 * bins + bin];
      if (need <= c) break;
      need -= c;
    }
    prefix |= bin << shift;
    if (shift == 0) break;
    int64_t kept = 0;
    for (i = 0; i < n_cand; ++i) {
      const uint32_t c = cand[i];
      cand[kept] = c;
      kept += ((c >> shift) & (bins - 1)) == bin;
    }
    n_cand = kept;
    shift = std::max(0, shift - bits);
  }
  *need_out = need;
  return lo_key + prefix;
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
  const int64_t m = s.hi - s.lo;
  const auto key_at = [&](int64_t i) { return descending_key(score[s.lo + i]); };
  if (m >= kFilterMin && s.quota <= m / 4) {
    // Sample, then filter: a bound T from an evenly spaced sample that at least the quota and, most likely,
    // not many more keys reach; one pass keeps the keys <= T (in index order) and the exact threshold is
    // found among them. Whenever at least the quota pass, every key up to the exact threshold is among
    // them, so the result is the exact selection's; otherwise (a misleading sample) the full radix runs.
    uint32_t sample[kSample];
    for (int64_t j = 0; j < kSample; ++j) sample[j] = key_at(j * m / kSample);
    const auto expect = static_cast<double>(s.quota) * kSample / static_cast<double>(m);
    const auto rank =
        std::min<int64_t>(kSample - 1, static_cast<int64_t>(expect + 4.0 * std::sqrt(expect)) + 8);
    std::nth_element(sample, sample + rank, sample + kSample);
    const uint32_t bound = sample[rank];
    // ckey [m + 16] the candidates' keys, cidx [m + 16] their indices in [lo, hi), then the radix's room
    const auto room = static_cast<size_t>(m + 16);
    scratch.resize(3 * room + 4 * kBins);
    uint32_t* ckey = scratch.data();
    uint32_t* cidx = ckey + room;
    int64_t c = 0;
#if defined(__x86_64__) && defined(ARIADNE_HAVE_X86_KERNELS)
    if (active_isa() == Isa::Avx512) {
      c = topk_avx512::filter_keys(score + s.lo, m, bound, ckey, cidx);
    } else
#endif
    {
      for (int64_t i = 0; i < m; ++i) {
        const uint32_t key = key_at(i);
        ckey[c] = key;
        cidx[c] = static_cast<uint32_t>(i);
        c += key <= bound;
      }
    }
    if (c >= s.quota) {
      int64_t need = 0;
      const uint32_t threshold = radix_threshold(ckey, c, s.quota, cidx + room, &need);
      int64_t w = 0;
      for (int64_t i = 0; i < s.lo; ++i) out[w++] = static_cast<int32_t>(i);
      for (int64_t j = 0; j < c; ++j) take_below(out, w, s.lo + cidx[j], ckey[j], threshold, need);
      for (int64_t i = s.hi; i < n; ++i) out[w++] = static_cast<int32_t>(i);
      return w;
    }
  }
  scratch.resize(static_cast<size_t>(2 * m) + 4 * kBins);
  uint32_t* keys = scratch.data();  // [m]
  for (int64_t i = 0; i < m; ++i) keys[i] = key_at(i);
  int64_t need = 0;
  const uint32_t threshold = radix_threshold(keys, m, s.quota, keys + m, &need);
  return emit_below(s, n, out, need, threshold, [&](int64_t j) { return keys[j - s.lo]; });
}

}  // namespace ariadne::cpu
