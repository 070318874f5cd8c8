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

// Larger scores are better (a NaN counts as -inf; -0 as 0): a radix select on the float bits (11-bit
// digits from the top of the scores' range, each level over the few that share the digits found), then one
// scan. With many entries and a small share chosen (hata's 1/16 of a long context), an evenly spaced
// sample of 1024 first bounds the threshold from below and one pass keeps the few entries within the
// bound, so the radix runs on those alone; the result is the same.
int64_t topk_largest_f32(const float* score, int64_t n, int64_t n_sink, int64_t n_recent, int64_t k,
                         int32_t* out, std::vector<uint32_t>& scratch);

namespace topk_avx512 {
// topk_avx512.cpp (x86-64 builds only): writes the keys <= bound of score[0, m) and their indices to ckey and
// cidx (each with room for m + 16), in index order; returns how many.
int64_t filter_keys(const float* score, int64_t m, uint32_t bound, uint32_t* ckey, uint32_t* cidx);
}  // namespace topk_avx512

}  // namespace ariadne::cpu
