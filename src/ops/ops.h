// Tensor-level operations a model calls. Each op checks its arguments (shapes, types) and dispatches to a
// backend kernel (src/kernels/cpu today; CUDA joins as another backend behind the same functions).
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/context.h"

namespace ariadne::ops {

// y[t][o] = sum_i w[o][i] * x[t][i] (+ bias[o]) for w of any weight type; x [n_tokens][w.cols()],
// y [n_tokens][w.rows()], bias [w.rows()] or nullptr.
void linear(const Context& ctx, const TensorView& w, const float* bias, const float* x, int64_t n_tokens,
            float* y);

// out[t] = table[ids[t]] as f32; throws Error when an id is outside [0, table.rows()).
void embed(const Context& ctx, const TensorView& table, const int32_t* ids, int64_t n_tokens, float* out);

// A 1-D tensor (norm weight, bias) widened to f32.
std::vector<float> to_f32(const TensorView& t);

// y = RMSNorm(x) * weight over rows of weight.size() floats; x and y may alias.
void rms_norm(const Context& ctx, const float* x, const std::vector<float>& weight, float eps, int64_t n_rows,
              float* y);

// x += y, then out = RMSNorm(x) * weight (rows of weight.size() floats) in one pass per row: a layer's
// residual add fused with the next norm. The same bits as add() then rms_norm(). out must not alias x or y.
void add_rms_norm(const Context& ctx, float* x, const float* y, const std::vector<float>& weight, float eps,
                  int64_t n_rows, float* out);

// gate = silu(gate) * up, elementwise over n floats.
void silu_mul(const Context& ctx, float* gate, const float* up, int64_t n);

// y += x over n floats.
void add(const Context& ctx, float* y, const float* x, int64_t n);

}  // namespace ariadne::ops
