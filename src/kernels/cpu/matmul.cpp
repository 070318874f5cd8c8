#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/quants.h"

namespace ariadne::cpu {

namespace {

// Per-thread scratch for dequantized weight rows in the multi-token path: 128 KiB, so a tile of rows stays
// in L2 while every token of the batch passes over it.
constexpr int64_t kScratchFloats = 32 * 1024;

const uint8_t* row_ptr(const void* base, size_t stride, int64_t row) {
  return static_cast<const uint8_t*>(base) + static_cast<size_t>(row) * stride;
}

}  // namespace

void matmul(const MatmulParams& p, ThreadPool& pool) {
  ARIADNE_CHECK(is_weight_type(p.w_type),
                fmt::format("matmul: {} is not a weight type", dtype_name(p.w_type)));
  ARIADNE_CHECK(
      p.n_out >= 0 && p.n_in >= 0 && p.n_tokens >= 0,
      fmt::format("matmul: negative size (n_out {}, n_in {}, n_tokens {})", p.n_out, p.n_in, p.n_tokens));
  ARIADNE_CHECK(p.n_in % block_size(p.w_type) == 0,
                fmt::format("matmul: n_in {} is not a multiple of the {} block size {}", p.n_in,
                            dtype_name(p.w_type), block_size(p.w_type)));
  if (p.n_out == 0 || p.n_tokens == 0) return;
  ARIADNE_CHECK(p.w != nullptr && p.x != nullptr && p.y != nullptr, "matmul: null w, x or y");
  ARIADNE_CHECK(
      p.w_row_stride >= row_bytes(p.w_type, p.n_in),
      fmt::format("matmul: w_row_stride {} < row size {}", p.w_row_stride, row_bytes(p.w_type, p.n_in)));
  ARIADNE_CHECK(p.n_tokens == 1 || (p.x_stride >= p.n_in && p.y_stride >= p.n_out),
                fmt::format("matmul: x_stride {} < n_in {} or y_stride {} < n_out {}", p.x_stride, p.n_in,
                            p.y_stride, p.n_out));

  const RowKernels& kernels = row_kernels(p.w_type);
  const int64_t n_in = p.n_in;

  if (p.n_tokens == 1) {
    // Decode: memory-bound, each weight row is read once and dotted straight from its blocks.
    pool.parallel_for(p.n_out, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; ++o) {
        float sum = kernels.dot(row_ptr(p.w, p.w_row_stride, o), p.x, n_in);
        if (p.bias) sum += p.bias[o];
        p.y[o] = sum;
      }
    });
    return;
  }

  // Prefill: dequantize a tile of rows once into f32 scratch and reuse it for every token. dot_f32 over a
  // dequantized row equals kernels.dot over the packed row bit for bit, so both paths agree.
  pool.parallel_for(p.n_out, [&](int64_t begin, int64_t end) {
    const int64_t tile_rows =
        std::clamp<int64_t>(kScratchFloats / std::max<int64_t>(n_in, 1), 1, end - begin);
    std::vector<float> scratch(static_cast<size_t>(tile_rows * n_in));  // [tile_rows][n_in]
    for (int64_t r0 = begin; r0 < end; r0 += tile_rows) {
      const int64_t rows = std::min(tile_rows, end - r0);
      for (int64_t r = 0; r < rows; ++r)
        kernels.dequantize(row_ptr(p.w, p.w_row_stride, r0 + r), scratch.data() + r * n_in, n_in);
      for (int64_t t = 0; t < p.n_tokens; ++t) {
        const float* x = p.x + t * p.x_stride;
        float* y = p.y + t * p.y_stride;
        for (int64_t r = 0; r < rows; ++r) {
          float sum = dot_f32(scratch.data() + r * n_in, x, n_in);
          if (p.bias) sum += p.bias[r0 + r];
          y[r0 + r] = sum;
        }
      }
    }
  });
}

void dequantize_rows(DType t, const void* src, size_t row_stride, int64_t n_rows, int64_t n_cols, float* dst,
                     ThreadPool& pool) {
  ARIADNE_CHECK(is_weight_type(t), fmt::format("dequantize_rows: {} is not a weight type", dtype_name(t)));
  ARIADNE_CHECK(n_rows >= 0 && n_cols >= 0 && n_cols % block_size(t) == 0,
                fmt::format("dequantize_rows: bad shape [{}, {}] for {}", n_rows, n_cols, dtype_name(t)));
  if (n_rows == 0 || n_cols == 0) return;
  ARIADNE_CHECK(src != nullptr && dst != nullptr, "dequantize_rows: null src or dst");
  ARIADNE_CHECK(
      row_stride >= row_bytes(t, n_cols),
      fmt::format("dequantize_rows: row_stride {} < row size {}", row_stride, row_bytes(t, n_cols)));
  const RowKernels& kernels = row_kernels(t);
  pool.parallel_for(n_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      kernels.dequantize(row_ptr(src, row_stride, r), dst + r * n_cols, n_cols);
  });
}

}  // namespace ariadne::cpu
