// Portable kernels of gemm.h: the reference the vectorised levels are tested against.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/half.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/quants.h"

namespace ariadne::cpu::gemm {

namespace {

float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

const uint8_t* row(const Tile& t, int r) {
  return t.w + static_cast<size_t>(r) * t.w_stride;
}

template <typename T>
const T* token(const Tile& t, int c) {
  return reinterpret_cast<const T*>(static_cast<const uint8_t*>(t.x) + static_cast<size_t>(c) * t.x_stride);
}

float& out(const Tile& t, int r, int c) {
  return t.y[c * t.y_stride + r];
}

// Float weights: each row widened to f32 once, then the fixed-order dot_f32 with every token.
template <void (*Widen)(const void*, float*, int64_t)>
void tile_float(const Tile& t) {
  std::vector<float> w(static_cast<size_t>(t.n));
  for (int r = 0; r < t.rows; ++r) {
    Widen(row(t, r), w.data(), t.n);
    for (int c = 0; c < t.cols; ++c) out(t, r, c) = dot_f32(w.data(), token<float>(t, c), t.n);
  }
}

void widen_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void widen_f16(const void* src, float* dst, int64_t n) {
  dequantize_row(DType::F16, src, dst, n);
}
void widen_bf16(const void* src, float* dst, int64_t n) {
  dequantize_row(DType::BF16, src, dst, n);
}

// Integer weights: Block(row, x, b) returns the contribution of the b-th group of 32 values (or the whole
// K-quant super-block's share) as a float; the row's total is their sum in block order.
void tile_q8_0(const Tile& t) {
  constexpr size_t kBytes = 34;
  for (int r = 0; r < t.rows; ++r) {
    for (int c = 0; c < t.cols; ++c) {
      const Q8Block* x = token<Q8Block>(t, c);
      float acc = 0.0f;
      for (int64_t b = 0; b < t.n / 32; ++b) {
        const uint8_t* block = row(t, r) + b * kBytes;
        int32_t dot = 0;
        for (int j = 0; j < 32; ++j) dot += static_cast<int8_t>(block[2 + j]) * x[b].q[j];
        acc += static_cast<float>(dot) * (load_f16(block) * x[b].d);
      }
      out(t, r, c) = acc;
    }
  }
}

void tile_q4_0(const Tile& t) {
  constexpr size_t kBytes = 18;
  for (int r = 0; r < t.rows; ++r) {
    for (int c = 0; c < t.cols; ++c) {
      const Q8Block* x = token<Q8Block>(t, c);
      float acc = 0.0f;
      for (int64_t b = 0; b < t.n / 32; ++b) {
        const uint8_t* block = row(t, r) + b * kBytes;
        int32_t dot = 0;
        for (int j = 0; j < 16; ++j)
          dot += (block[2 + j] & 0x0f) * x[b].q[j] + (block[2 + j] >> 4) * x[b].q[j + 16];
        dot -= 8 * (x[b].sum[0] + x[b].sum[1]);
        acc += static_cast<float>(dot) * (load_f16(block) * x[b].d);
      }
      out(t, r, c) = acc;
    }
  }
}

// Packed Q4_0 (gemm.h, packed.h): the arithmetic of tile_q4_0 above, so the results are the same bits; only
// where each row's bytes and scale lie differs.
void tile_q4_0_packed(const PackedTile& t) {
  const int64_t nb = t.n / 32;
  const uint8_t* scales = t.w + 256 * nb;
  for (int r = 0; r < t.rows; ++r) {
    for (int c = 0; c < t.cols; ++c) {
      const auto* x =
          reinterpret_cast<const Q8OffsetBlock*>(reinterpret_cast<const uint8_t*>(t.x) + c * t.x_stride);
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* q = t.w + 256 * b + 4 * r;  // row r's bytes 4k..4k+3 at q + 64 * k
        int32_t dot = 0;
        for (int j = 0; j < 16; ++j) {
          const uint8_t byte = q[64 * (j / 4) + j % 4];
          dot += (byte & 0x0f) * x[b].q[j] + (byte >> 4) * x[b].q[j + 16];
        }
        dot += x[b].offset;  // -8 * (sum[0] + sum[1]): the same integer as tile_q4_0's
        acc += static_cast<float>(dot) * (load_f16(scales + 32 * b + 2 * r) * x[b].d);
      }
      t.y[c * t.y_stride + r] = acc;
    }
  }
}

// Per sub-block j of 32 values: (d * scale_j * dx_j) * sum(q * qx) - (dmin * min_j * dx_j) * sum(qx).
void tile_q4_k(const Tile& t) {
  constexpr size_t kBytes = 144;
  for (int r = 0; r < t.rows; ++r) {
    for (int c = 0; c < t.cols; ++c) {
      const Q8Block* x = token<Q8Block>(t, c);
      float acc = 0.0f, mins = 0.0f;
      for (int64_t b = 0; b < t.n / 256; ++b) {
        const uint8_t* block = row(t, r) + b * kBytes;
        const float d = load_f16(block), dmin = load_f16(block + 2);
        for (int j = 0; j < 8; ++j) {
          const Q8Block& xb = x[b * 8 + j];
          int scale, min;
          q4k_scale_min(j, block + 4, scale, min);
          const uint8_t* qs = block + 16 + 32 * (j / 2);
          const int shift = (j % 2) * 4;
          int32_t dot = 0;
          for (int l = 0; l < 32; ++l) dot += ((qs[l] >> shift) & 0x0f) * xb.q[l];
          acc += static_cast<float>(dot * scale) * (d * xb.d);
          mins += static_cast<float>((xb.sum[0] + xb.sum[1]) * min) * (dmin * xb.d);
        }
      }
      out(t, r, c) = acc - mins;
    }
  }
}

// Per 32 values (two int8 scales of 16): (d * dx) * sum_halves(scale_h * sum((q - 32) * qx)).
void tile_q6_k(const Tile& t) {
  constexpr size_t kBytes = 210;
  for (int r = 0; r < t.rows; ++r) {
    for (int c = 0; c < t.cols; ++c) {
      const Q8Block* x = token<Q8Block>(t, c);
      float acc = 0.0f;
      for (int64_t b = 0; b < t.n / 256; ++b) {
        const uint8_t* block = row(t, r) + b * kBytes;
        const float d = load_f16(block + 208);
        const auto* scales = reinterpret_cast<const int8_t*>(block + 192);
        for (int g = 0; g < 8; ++g) {  // group g: values 32g..32g+31 = half g/4, quarter g%4
          const Q8Block& xb = x[b * 8 + g];
          const int half = g / 4, quarter = g % 4;
          const uint8_t* ql = block + 64 * half + 32 * (quarter % 2);
          const uint8_t* qh = block + 128 + 32 * half;
          const int nibble_shift = (quarter / 2) * 4;
          int32_t isum = 0;
          for (int h = 0; h < 2; ++h) {
            int32_t dot = 0;
            for (int l = 16 * h; l < 16 * h + 16; ++l) {
              const int q = ((ql[l] >> nibble_shift) & 0x0f) | (((qh[l] >> (2 * quarter)) & 3) << 4);
              dot += q * xb.q[l];
            }
            isum += scales[2 * g + h] * (dot - 32 * xb.sum[h]);
          }
          acc += static_cast<float>(isum) * (d * xb.d);
        }
      }
      out(t, r, c) = acc;
    }
  }
}

void quantize_q8(const float* x, Q8Block* out, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float inv = d >= kMinScale ? 1.0f / d : 0.0f;
    Q8Block& o = out[b];
    o.d = d;
    int sums[2] = {0, 0};
    for (int j = 0; j < 32; ++j) {
      const int q = static_cast<int>(std::nearbyint(x[j] * inv));
      o.q[j] = static_cast<int8_t>(q);
      sums[j / 16] += q;
    }
    o.sum[0] = static_cast<int16_t>(sums[0]);
    o.sum[1] = static_cast<int16_t>(sums[1]);
  }
}

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels kernels{tile_float<widen_f32>,
                               tile_float<widen_f16>,
                               tile_float<widen_bf16>,
                               tile_q8_0,
                               tile_q4_0,
                               tile_q4_k,
                               tile_q6_k,
                               quantize_q8,
                               tile_q4_0_packed,
                               nullptr};
  return kernels;
}

}  // namespace ariadne::cpu::gemm
