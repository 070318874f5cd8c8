// Matrix multiplication of a weight matrix (any weight type) with f32 activations, and bulk dequantization.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace ariadne::cpu {

struct MatmulParams {
  DType w_type = DType::F32;
  const void* w = nullptr;  // [n_out] rows of row_bytes(w_type, n_in) bytes; may be unaligned
  size_t w_row_stride = 0;  // bytes between rows (>= row_bytes(w_type, n_in))
  int64_t n_out = 0;
  int64_t n_in = 0;          // a multiple of block_size(w_type)
  const float* x = nullptr;  // [n_tokens][x_stride], first n_in used
  int64_t x_stride = 0;      // floats between token rows (>= n_in when n_tokens > 1)
  int64_t n_tokens = 0;
  float* y = nullptr;           // [n_tokens][y_stride], first n_out written, the rest untouched
  int64_t y_stride = 0;         // floats between token rows (>= n_out when n_tokens > 1)
  const float* bias = nullptr;  // [n_out] or null
  // Quantized weights (Q8_0, Q4_0, Q4_K, Q6_K) normally meet activations rounded to 8 bits per 32 values
  // (integer dot products, as llama.cpp does). exact = true dequantizes the weights to f32 instead and
  // computes in f32 like the float types: slower, but equal to the dequantized model's arithmetic.
  bool exact = false;
  // Q4_0 only, optional: the same matrix packed by pack_q4_0 (packed.h), 64-byte aligned for speed. When
  // set, it is read instead of w (w and w_row_stride are then not used), by the integer kernels and in
  // exact mode alike.
  const void* w_packed = nullptr;
};

// y[t][o] = sum_i W[o][i] * x[t][i] (+ bias[o]) for t < n_tokens, o < n_out.
// Vectorised for the active instruction-set level (isa.h); tiles of up to 4 rows x 4 tokens (float weights:
// 6 rows x 4 tokens; packed Q4_0: 16 rows x 8 tokens), parallel over rows. Every output is reduced in an
// order fixed by n_in alone, so y is bit-identical for any thread count and for any n_tokens (a token alone
// or in a batch gives the same row) at a given level; levels agree within rounding. Bad params (sizes,
// strides, null pointers) fail ARIADNE_CHECK. y must not alias w, x or bias.
void matmul(const MatmulParams& p, ThreadPool& pool);

// dst[r][c] = W[r][c] as f32 for r < n_rows, c < n_cols; dst: [n_rows][n_cols], contiguous. Source rows
// are row_stride bytes apart. Used for embedding lookup and format conversion.
void dequantize_rows(DType t, const void* src, size_t row_stride, int64_t n_rows, int64_t n_cols, float* dst,
                     ThreadPool& pool);

}  // namespace ariadne::cpu
