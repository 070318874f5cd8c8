// What every op receives: where to run (for now the CPU thread pool) and an optional observer that sees
// named intermediate results (llama.cpp's `cb(cur, "attn_norm", il)` idea) for debugging against a reference.
#pragma once

#include <cstdint>
#include <functional>

#include "core/thread_pool.h"

namespace ariadne::ops {

// Called with (name, layer or -1, data [n_rows][n_cols]) after each named step when set.
using Observer =
    std::function<void(const char* name, int layer, const float* data, int64_t n_rows, int64_t n_cols)>;

struct Context {
  ThreadPool& pool;
  Observer observer;  // empty: nothing observed
  // Quantized weights meet f32 activations instead of 8-bit ones (cpu::MatmulParams::exact): slower, equal
  // to the dequantized model's arithmetic.
  bool exact_matmul = false;

  void observe(const char* name, int layer, const float* data, int64_t n_rows, int64_t n_cols) const {
    if (observer) observer(name, layer, data, n_rows, n_cols);
  }
};

}  // namespace ariadne::ops
