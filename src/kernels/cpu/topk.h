// Top-k selection for sparse attention (../shared/specs/hata.md §2.2): which k of a head's n entries a
// decode step reads. The first n_sink and the last n_recent entries are forced (always chosen, counted
// inside k); the best of the others fill the rest, ties going to the lower index (the earlier entry). The
// chosen indices come out ascending. Both run in O(n) time.
#pragma once

#include <cstdint>
#include <vector>

namespace ariadne::cpu {

// Smaller scores are better (Hamming sums, 0..max_score): a counting pass and one scan (histogram select).
// Returns the number written: min(k, n), or the forced count when that is more. hist: scratch.
int64_t topk_smallest_u32(const uint32_t* score, int64_t n, uint32_t max_score, int64_t n_sink,
                          int64_t n_recent, int64_t k, int32_t* out, std::vector<uint32_t>& hist);

// Larger scores are better (a NaN counts as -inf; -0 as 0): a radix select on the float bits (a 12-bit
// histogram over every entry, then 12 and 8 bits over the few that share the leading bits), then one scan.
int64_t topk_largest_f32(const float* score, int64_t n, int64_t n_sink, int64_t n_recent, int64_t k,
                         int32_t* out, std::vector<uint32_t>& scratch);

}  // namespace ariadne::cpu
