// Rotary position embedding applied to the heads of Q or K.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/context.h"

namespace ariadne::ops {

struct RopeTable {
  std::vector<float> inv_freq;  // [head_dim/2] angle per position of pair i, scaling folded in
  float position_scale = 1.0f;  // linear scaling: 1/factor
  bool neox = true;             // pairs (i, i+d/2) (Hugging Face layout) vs (2i, 2i+1) (GGUF llama, llama2.c)
};

// x: [n_tokens][token_stride] floats, n_heads heads of head_dim at the start of each token row.
void rope(const Context& ctx, const RopeTable& table, float* x, int64_t n_tokens, int64_t n_heads,
          int64_t head_dim, int64_t token_stride, const int32_t* positions);

}  // namespace ariadne::ops
