#include "kernels/cpu/elementwise.h"

#include <algorithm>
#include <cmath>

namespace ariadne::cpu {

void rms_norm(const float* x, const float* weight, float* y, int64_t n_rows, int64_t n, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    // Accumulate in double: the mean of squares over thousands of channels is where f32 loses digits.
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] * scale) * weight[i];
  }
}

void add_rms_norm(float* x, const float* y, const float* weight, float* out, int64_t n_rows, int64_t n,
                  float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    float* xr = x + r * n;
    const float* yr = y + r * n;
    double sum = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      xr[i] += yr[i];
      sum += static_cast<double>(xr[i]) * xr[i];
    }
    const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
    float* o = out + r * n;
    for (int64_t i = 0; i < n; ++i) o[i] = (xr[i] * scale) * weight[i];
  }
}

void rope(float* x, const RopeParams& p) {
  const int64_t half = p.head_dim / 2;
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const double pos = static_cast<double>(p.positions[t]) * p.position_scale;
    float* xt = x + t * p.token_stride;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = pos * p.inv_freq[i];
      const float c = static_cast<float>(std::cos(angle));
      const float s = static_cast<float>(std::sin(angle));
      for (int64_t h = 0; h < p.n_heads; ++h) {
        float* xh = xt + h * p.head_dim;
        float* a = p.neox ? xh + i : xh + 2 * i;
        float* b = p.neox ? xh + i + half : xh + 2 * i + 1;
        const float x0 = *a;
        const float x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x1 * c + x0 * s;
      }
    }
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void softmax(float* x, int64_t n) {
  if (n <= 0) return;
  const float max = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace ariadne::cpu
