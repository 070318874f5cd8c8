#include "kernels/cpu/packed.h"

#include <cstring>

#include "core/error.h"

namespace ariadne::cpu {

namespace {

constexpr size_t kBlockBytes = 18;  // Q4_0: f16 d + 16 quant bytes

void check_cols(int64_t n_cols) {
  ARIADNE_CHECK(n_cols > 0 && n_cols % 32 == 0,
                fmt::format("packed q4_0: row length {} is not a positive multiple of 32", n_cols));
}

}  // namespace

size_t q4_0_group_bytes(int64_t n_cols) {
  check_cols(n_cols);
  const size_t bytes = static_cast<size_t>(n_cols / 32) * kQ4_0PackRows * kBlockBytes;
  return (bytes + 63) / 64 * 64;
}

size_t q4_0_packed_bytes(int64_t n_rows, int64_t n_cols) {
  ARIADNE_CHECK(n_rows >= 0, fmt::format("packed q4_0: negative row count {}", n_rows));
  return static_cast<size_t>((n_rows + kQ4_0PackRows - 1) / kQ4_0PackRows) * q4_0_group_bytes(n_cols);
}

void pack_q4_0_groups(const void* src, size_t row_stride, int64_t n_rows, int64_t n_cols, void* dst,
                      int64_t first_group, int64_t n_groups) {
  const size_t group_bytes = q4_0_group_bytes(n_cols);
  const int64_t nb = n_cols / 32;
  ARIADNE_CHECK(row_stride >= static_cast<size_t>(nb) * kBlockBytes,
                fmt::format("packed q4_0: row stride {} < row size {}", row_stride, nb * kBlockBytes));
  ARIADNE_CHECK(first_group >= 0 && n_groups >= 0 &&
                    first_group + n_groups <= (n_rows + kQ4_0PackRows - 1) / kQ4_0PackRows,
                fmt::format("packed q4_0: groups [{}, {}) outside a matrix of {} rows", first_group,
                            first_group + n_groups, n_rows));
  for (int64_t g = first_group; g < first_group + n_groups; ++g) {
    uint8_t* out = static_cast<uint8_t*>(dst) + static_cast<size_t>(g) * group_bytes;
    const bool full = (g + 1) * kQ4_0PackRows <= n_rows;
    if (full)
      std::memset(out + 288 * nb, 0, group_bytes - static_cast<size_t>(288 * nb));  // the tail only
    else
      std::memset(out, 0, group_bytes);  // padding rows: zero scales and nibbles
    uint8_t* scales = out + 256 * nb;
    for (int64_t i = 0; i < kQ4_0PackRows; ++i) {
      const int64_t r = g * kQ4_0PackRows + i;
      if (r >= n_rows) break;
      const uint8_t* row = static_cast<const uint8_t*>(src) + static_cast<size_t>(r) * row_stride;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* block = row + b * kBlockBytes;
        std::memcpy(scales + 32 * b + 2 * i, block, 2);
        for (int k = 0; k < 4; ++k) std::memcpy(out + 256 * b + 64 * k + 4 * i, block + 2 + 4 * k, 4);
      }
    }
  }
}

void pack_q4_0(const void* src, size_t row_stride, int64_t n_rows, int64_t n_cols, void* dst) {
  pack_q4_0_groups(src, row_stride, n_rows, n_cols, dst, 0, (n_rows + kQ4_0PackRows - 1) / kQ4_0PackRows);
}

void unpack_q4_0_row(const void* packed, int64_t n_cols, int64_t row, void* dst) {
  ARIADNE_CHECK(row >= 0, fmt::format("packed q4_0: negative row {}", row));
  const int64_t nb = n_cols / 32;
  const auto* group = static_cast<const uint8_t*>(packed) +
                      static_cast<size_t>(row / kQ4_0PackRows) * q4_0_group_bytes(n_cols);
  const int64_t i = row % kQ4_0PackRows;
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* block = out + b * kBlockBytes;
    std::memcpy(block, group + 256 * nb + 32 * b + 2 * i, 2);
    for (int k = 0; k < 4; ++k) std::memcpy(block + 2 + 4 * k, group + 256 * b + 64 * k + 4 * i, 4);
  }
}

}  // namespace ariadne::cpu
