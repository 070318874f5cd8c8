// Row-wise CPU kernels used by every transformer block: RMSNorm, RoPE, SiLU-gated product, softmax.
// Raw pointers and explicit shapes; the caller (src/ops) checks arguments and picks the backend.
#pragma once

#include <cstdint>

#include "core/thread_pool.h"

namespace ariadne::cpu {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, for n_rows rows of n floats (weight [n], f32).
// x and y may alias.
void rms_norm(const float* x, const float* weight, float* y, int64_t n_rows, int64_t n, float eps);

// The residual add and the next RMSNorm in one pass: x[r] += y[r], then out[r] = RMSNorm(x[r]) * weight, row
// by row (each row of x is read once while it is in cache). The same arithmetic as add() then rms_norm(), so
// the same bits. out must not alias x or y.
void add_rms_norm(float* x, const float* y, const float* weight, float* out, int64_t n_rows, int64_t n,
                  float eps);

struct RopeParams {
  int64_t n_tokens;
  int64_t n_heads;
  int64_t head_dim;
  int64_t token_stride;      // floats between consecutive tokens
  const int32_t* positions;  // [n_tokens]
  const float* inv_freq;     // [head_dim/2] rotation speed of pair i (scaling already folded in)
  float position_scale;      // positions are multiplied by this (linear RoPE scaling: 1/factor)
  bool neox;                 // pairs (i, i+head_dim/2) instead of (2i, 2i+1)
};

// Rotates x in place: x is [n_tokens][token_stride] with n_heads heads of head_dim at the start of each
// token.
void rope(float* x, const RopeParams& p);

// gate[i] = silu(gate[i]) * up[i] for n floats.
void silu_mul(float* gate, const float* up, int64_t n);

// y[i] += x[i]
void add(float* y, const float* x, int64_t n);

// In-place numerically stable softmax over n floats.
void softmax(float* x, int64_t n);

}  // namespace ariadne::cpu
