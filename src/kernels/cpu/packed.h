// Q4_0 weight matrices repacked for the matmul kernels (gemm.h PackedTile), made once when a model is
// loaded (formats: pack_weights) and read instead of the file's rows.
//
// Rows are taken 16 at a time (a group; the last group of a matrix whose row count is not a multiple of 16
// is padded with zero rows, which are computed and never written). For a row length of n values
// (nb = n / 32 blocks), group g of a packed matrix starts at g * q4_0_group_bytes(n) and holds:
//   [256 * b + 64 * k + 4 * i + j]  byte 4k + j (k < 4, j < 4) of the 16 quant bytes of block b of the
//                                   group's row i; so the low nibbles of chunk k are values 4k..4k+3 of
//                                   the 16 rows and the high nibbles values 16+4k..16+4k+3
//   [256 * nb + 32 * b + 2 * i]     the f16 scale d of block b of row i
//   then zeros up to a multiple of 64 bytes, so every group of a 64-byte aligned buffer is aligned.
// The bytes are the file's, moved: dequantizing a packed row gives the same values bit for bit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ariadne::cpu {

constexpr int64_t kQ4_0PackRows = 16;

// Bytes of one group of 16 rows of n_cols values (n_cols a multiple of 32).
size_t q4_0_group_bytes(int64_t n_cols);
// Bytes of a packed matrix: ceil(n_rows / 16) groups.
size_t q4_0_packed_bytes(int64_t n_rows, int64_t n_cols);

// Packs groups [first_group, first_group + n_groups) of the Q4_0 matrix at src (rows row_stride bytes
// apart, n_rows rows in all) into dst, the start of the whole packed matrix. Packing every group once
// gives the full matrix; a caller may go in slices to release the source as it goes.
void pack_q4_0_groups(const void* src, size_t row_stride, int64_t n_rows, int64_t n_cols, void* dst,
                      int64_t first_group, int64_t n_groups);
void pack_q4_0(const void* src, size_t row_stride, int64_t n_rows, int64_t n_cols, void* dst);

// Writes row `row` of a packed matrix back in the Q4_0 layout (row_bytes(Q4_0, n_cols) bytes at dst).
void unpack_q4_0_row(const void* packed, int64_t n_cols, int64_t row, void* dst);

}  // namespace ariadne::cpu
