// Sign-hash codes and their Hamming distances, on the CPU (../shared/specs/hata.md §2.1, §2.2).
//
// A code of x under a projection W ([d][r], r a multiple of 64) is r bits, bit j = (x . W[:, j] > 0) (a
// projection of exactly 0 gives 0), packed LSB-first into r/64 words: bit j is bit j % 64 of word j / 64.
//
// Scoring sums, for each key code, the popcount of (query code XOR key code) over the query codes of a GQA
// group. Paths, chosen at run time: AVX-512 VPOPCNTDQ (hamming_avx512.cpp) where the CPU has it, else the
// scalar loop (one 64-bit popcnt per word when the compiler targets it).
#pragma once

#include <cstdint>

namespace ariadne::cpu {

// codes[i][0 .. r/64) = code of x[i] ([n][d]) under w ([d][r], row-major). proj: scratch of r floats.
// Each projection is summed over d in order, so the bits equal a plain loop's (up to FMA contraction).
void hash_encode(const float* x, int64_t n, int64_t d, const float* w, int64_t r, uint64_t* codes,
                 float* proj);

// out[i] = sum_{h < n_q} popcount(q[h] XOR k[i]) over `words` 64-bit words; q: [n_q][words], k: [n][words].
void hamming_group(const uint64_t* q, int64_t n_q, const uint64_t* k, int64_t n, int64_t words,
                   uint32_t* out);

// The same with the portable loop only (the reference the vector path is tested against).
void hamming_group_scalar(const uint64_t* q, int64_t n_q, const uint64_t* k, int64_t n, int64_t words,
                          uint32_t* out);

// HATA's norm-mode score scaled by r (same order as the spec's (G - 2 sum/r) |k|, and exact to form):
// out[i] = f16(norm[i]) * float(full - 2 * sum_i), with sum_i as hamming_group computes it and full = G * r
// (every value of full - 2 sum_i is an integer of magnitude below 2^24, so only the product rounds).
void hamming_group_weighted(const uint64_t* q, int64_t n_q, const uint64_t* k, const uint16_t* norm,
                            int64_t n, int64_t words, int32_t full, float* out);
void hamming_group_weighted_scalar(const uint64_t* q, int64_t n_q, const uint64_t* k, const uint16_t* norm,
                                   int64_t n, int64_t words, int32_t full, float* out);

// Whether hamming_group takes the AVX-512 VPOPCNTDQ path on this CPU (and build, and active_isa()).
bool hamming_uses_vpopcntdq();

namespace hamming_avx512 {
// hamming_avx512.cpp (x86-64 builds only); words must be 1, 2 or 4 or a multiple of 8.
void group(const uint64_t* q, int64_t n_q, const uint64_t* k, int64_t n, int64_t words, uint32_t* out);
// hamming_group_weighted; words must be 1, 2 or 4.
void group_weighted(const uint64_t* q, int64_t n_q, const uint64_t* k, const uint16_t* norm, int64_t n,
                    int64_t words, int32_t full, float* out);
}  // namespace hamming_avx512

}  // namespace ariadne::cpu
