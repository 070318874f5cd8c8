#include "ops/ops.h"

#include <algorithm>

#include "core/error.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/packed.h"
#include "kernels/cpu/quants.h"

namespace ariadne::ops {

void linear(const Context& ctx, const TensorView& w, const float* bias, const float* x, int64_t n_tokens,
            float* y) {
  ARIADNE_CHECK(w.shape.size() == 2, "linear: weight '" + w.name + "' must be 2-D");
  cpu::MatmulParams p{};
  p.w_type = w.type;
  p.w = w.data;
  p.w_row_stride = row_bytes(w.type, w.cols());
  p.n_out = w.rows();
  p.n_in = w.cols();
  p.x = x;
  p.x_stride = w.cols();
  p.n_tokens = n_tokens;
  p.y = y;
  p.y_stride = w.rows();
  p.bias = bias;
  p.exact = ctx.exact_matmul;
  if (w.type == DType::Q4_0) p.w_packed = w.packed;
  cpu::matmul(p, ctx.pool);
}

void embed(const Context& ctx, const TensorView& table, const int32_t* ids, int64_t n_tokens, float* out) {
  const int64_t n_vocab = table.rows();
  const int64_t n_embd = table.cols();
  const size_t stride = row_bytes(table.type, n_embd);
  for (int64_t t = 0; t < n_tokens; ++t) {
    if (ids[t] < 0 || ids[t] >= n_vocab)
      fail("token id {} at position {} is outside the vocabulary [0, {})", ids[t], t, n_vocab);
  }
  if (table.packed != nullptr && table.type == DType::Q4_0) {
    // A packed table (often the tied output head): its rows written back in the Q4_0 layout first.
    ctx.pool.parallel_for(n_tokens, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> row(stride);
      for (int64_t t = begin; t < end; ++t) {
        cpu::unpack_q4_0_row(table.packed, n_embd, ids[t], row.data());
        cpu::dequantize_row(table.type, row.data(), out + t * n_embd, n_embd);
      }
    });
    return;
  }
  ctx.pool.parallel_for(n_tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      cpu::dequantize_row(table.type, table.data + static_cast<size_t>(ids[t]) * stride, out + t * n_embd,
                          n_embd);
  });
}

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  cpu::dequantize_row(t.type, t.data, out.data(), t.numel());
  return out;
}

void rms_norm(const Context& ctx, const float* x, const std::vector<float>& weight, float eps, int64_t n_rows,
              float* y) {
  const int64_t n = static_cast<int64_t>(weight.size());
  ctx.pool.parallel_for(n_rows, [&](int64_t begin, int64_t end) {
    cpu::rms_norm(x + begin * n, weight.data(), y + begin * n, end - begin, n, eps);
  });
}

void add_rms_norm(const Context& ctx, float* x, const float* y, const std::vector<float>& weight, float eps,
                  int64_t n_rows, float* out) {
  const int64_t n = static_cast<int64_t>(weight.size());
  ctx.pool.parallel_for(n_rows, [&](int64_t begin, int64_t end) {
    cpu::add_rms_norm(x + begin * n, y + begin * n, weight.data(), out + begin * n, end - begin, n, eps);
  });
}

namespace {
// Elementwise work below this many floats runs on the calling thread (a decode step's vectors): waking the
// pool would cost more than the loop. Above it (prefill), contiguous ranges go to the threads; every
// element is computed the same way wherever it runs.
constexpr int64_t kSerialElements = 65536;

template <typename Fn>
void elementwise(const Context& ctx, int64_t n, Fn&& fn) {
  if (n < kSerialElements || ctx.pool.size() == 1) {
    fn(0, n);
    return;
  }
  // Ranges of whole cache lines (16 floats), so that no two threads write the same line.
  const int64_t lines = (n + 15) / 16;
  ctx.pool.parallel_for(lines, [&](int64_t b, int64_t e) { fn(b * 16, std::min(n, e * 16)); });
}
}  // namespace

void silu_mul(const Context& ctx, float* gate, const float* up, int64_t n) {
  elementwise(ctx, n, [&](int64_t b, int64_t e) { cpu::silu_mul(gate + b, up + b, e - b); });
}

void add(const Context& ctx, float* y, const float* x, int64_t n) {
  elementwise(ctx, n, [&](int64_t b, int64_t e) { cpu::add(y + b, x + b, e - b); });
}

}  // namespace ariadne::ops
