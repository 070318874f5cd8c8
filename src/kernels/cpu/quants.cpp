#include "kernels/cpu/quants.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "core/half.h"

// A note on bit-exactness with ggml: each dequantized value is an f16 scale (11-bit mantissa) times small
// integers: 19 bits for Q8_0, 15 for Q4_0, 21 for Q4_K's (d * scale) * q, all exact in f32. Q6_K's
// (d * scale) * q may need 25 bits, but d * scale is exact, so any order rounds once to the same value.
// So results depend neither on the order of the multiplications nor on FMA contraction; only Q4_K's
// final subtraction of the min rounds.

namespace ariadne::cpu {

namespace {

// --- Block layouts (byte offsets inside a block; see quants.h) -------------------------------------------

constexpr size_t kQ8_0Bytes = 2 + kQK8_0;
constexpr size_t kQ4_0Bytes = 2 + kQK4_0 / 2;

constexpr size_t kQ4K_D = 0, kQ4K_DMin = 2, kQ4K_Scales = 4, kQ4K_Qs = 16;
constexpr size_t kQ4KBytes = kQ4K_Qs + kQK_K / 2;  // 144

constexpr size_t kQ6K_Ql = 0, kQ6K_Qh = kQK_K / 2, kQ6K_Scales = kQ6K_Qh + kQK_K / 4,
                 kQ6K_D = kQ6K_Scales + 16;
constexpr size_t kQ6KBytes = kQ6K_D + 2;  // 210

inline float load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}
inline void store_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Round to nearest (ties to even), for our own quantizers only; the ggml-compatible ones use ggml's rules.
inline int nearest_int(float v) {
  return static_cast<int>(std::lrintf(v));
}

// --- Fixed-order f32 dot product ---------------------------------------------------------------------------

constexpr int kLanes = 16;

// Accumulates products into kLanes interleaved partial sums; the order of every addition is fixed by the
// element index alone (see dot_f32 in quants.h). Lane-wise code needs no reassociation, so the compiler
// may vectorise it without changing a bit.
struct DotAccumulator {
  float lane[kLanes] = {};
  float tail = 0.0f;

  // n: a multiple of kLanes.
  void add_lanes(const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const float p = a[i + k] * b[i + k];
        lane[k] += p;
      }
    }
  }
  // The last n % kLanes products of the row, in order.
  void add_tail(const float* a, const float* b, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const float p = a[i] * b[i];
      tail += p;
    }
  }
  float result() const {
    float s[kLanes];
    std::copy(lane, lane + kLanes, s);
    for (int width = kLanes / 2; width >= 1; width /= 2)
      for (int k = 0; k < width; ++k) s[k] += s[k + width];
    return s[0] + tail;
  }
};

// --- F32 / F16 / BF16 ------------------------------------------------------------------------------------

void dequantize_f32(const void* src, float* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}
void quantize_f32(const float* src, void* dst, int64_t n) {
  std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

// All 65536 f16 values as f32 (256 KiB, built on first use): a load instead of the branchy bit conversion
// until a SIMD kernel (F16C / NEON) replaces this one.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t h = 0; h < 65536; ++h) t[h] = f16_to_f32(static_cast<uint16_t>(h));
    return t;
  }();
  return table.data();
}

void dequantize_f16(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  const float* table = f16_table();
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = table[h];
  }
}
void quantize_f16(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) store_f16(p + 2 * i, src[i]);
}

void dequantize_bf16(const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    dst[i] = bf16_to_f32(h);
  }
}
void quantize_bf16(const float* src, void* dst, int64_t n) {
  auto* p = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t h = f32_to_bf16(src[i]);
    std::memcpy(p + 2 * i, &h, 2);
  }
}

// Dot of a row of scalar elements: converted in chunks into a stack buffer. Chunks are multiples of
// kLanes, so only the last one can leave a tail, and the lanes see the same elements as in dot_f32.
template <void (*Convert)(const void*, float*, int64_t), size_t kElemBytes>
float dot_scalar_row(const void* row, const float* x, int64_t n) {
  constexpr int64_t kChunk = 256;
  static_assert(kChunk % kLanes == 0);
  const auto* p = static_cast<const uint8_t*>(row);
  float buf[kChunk];
  DotAccumulator acc;
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t count = std::min(kChunk, n - i);
    Convert(p + static_cast<size_t>(i) * kElemBytes, buf, count);
    const int64_t full = count - count % kLanes;
    acc.add_lanes(buf, x + i, full);
    acc.add_tail(buf + full, x + i + full, count - full);
  }
  return acc.result();
}

// --- Q8_0 ------------------------------------------------------------------------------------------------

void dequantize_q8_0(const void* src, float* dst, int64_t n) {
  const auto* block = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b, block += kQ8_0Bytes, dst += kQK8_0) {
    const float d = load_f16(block);
    int8_t q[kQK8_0];  // a local copy: dst cannot alias it, so the loop vectorises
    std::memcpy(q, block + 2, kQK8_0);
    for (int j = 0; j < kQK8_0; ++j) dst[j] = static_cast<float>(q[j]) * d;
  }
}

// ggml's reference rounding: d = amax / 127, q = roundf(x / d) (ties away from zero), computed as x * (1/d).
void quantize_q8_0(const float* src, void* dst, int64_t n) {
  auto* block = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kQK8_0; ++b, block += kQ8_0Bytes, src += kQK8_0) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(src[j]));
    const float d = amax / 127.0f;
    const float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(block, d);
    for (int j = 0; j < kQK8_0; ++j) {
      const float scaled = src[j] * inv_d;
      block[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(scaled)));
    }
  }
}

// --- Q4_0 ------------------------------------------------------------------------------------------------

void dequantize_q4_0(const void* src, float* dst, int64_t n) {
  constexpr int kHalf = kQK4_0 / 2;
  const auto* block = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kQK4_0; ++b, block += kQ4_0Bytes, dst += kQK4_0) {
    const float d = load_f16(block);
    const uint8_t* qs = block + 2;
    for (int j = 0; j < kHalf; ++j) {
      dst[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
      dst[j + kHalf] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

// ggml's reference rounding: the value of largest magnitude (first one on ties, with its sign) maps to
// -8, so d = max / -8 and the full range [-8, 7] is used; q = (int8)(x / d + 8.5), i.e. truncation of
// a positive number, clamped to 15 (only the value opposite to max can reach 16).
void quantize_q4_0(const float* src, void* dst, int64_t n) {
  constexpr int kHalf = kQK4_0 / 2;
  auto* block = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kQK4_0; ++b, block += kQ4_0Bytes, src += kQK4_0) {
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < kQK4_0; ++j) {
      if (amax < std::fabs(src[j])) {
        amax = std::fabs(src[j]);
        max = src[j];
      }
    }
    const float d = max / -8.0f;
    const float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
    store_f16(block, d);
    auto quantize_one = [inv_d](float v) {
      const float scaled = v * inv_d;
      return static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(scaled + 8.5f))));
    };
    for (int j = 0; j < kHalf; ++j)
      block[2 + j] = static_cast<uint8_t>(quantize_one(src[j]) | (quantize_one(src[j + kHalf]) << 4));
  }
}

// --- Q4_K ------------------------------------------------------------------------------------------------

void dequantize_q4_k(const void* src, float* dst, int64_t n) {
  const auto* block = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b, block += kQ4KBytes) {
    const float d = load_f16(block + kQ4K_D);
    const float dmin = load_f16(block + kQ4K_DMin);
    const uint8_t* scales = block + kQ4K_Scales;
    // Sub-blocks 2c and 2c+1 share the 32 bytes qs[32c..32c+31]: low nibbles, then high nibbles.
    for (int j = 0; j < kQK_K / 32; ++j) {
      int scale, min;
      q4k_scale_min(j, scales, scale, min);
      const float d_j = d * static_cast<float>(scale);
      const float m_j = dmin * static_cast<float>(min);
      const uint8_t* qs = block + kQ4K_Qs + 32 * (j / 2);
      const int shift = (j % 2) * 4;
      for (int l = 0; l < 32; ++l) {
        const float scaled = d_j * static_cast<float>((qs[l] >> shift) & 0x0f);
        *dst++ = scaled - m_j;
      }
    }
  }
}

// Fits x ~= scale * q - min, q in [0, 15], scale >= 0, min >= 0 (ggml's Q4_K stores both unsigned, so the
// represented range always contains 0). Starts from the min/max range, then alternates rounding with a
// least-squares refit of (scale, min); keeps the best fit. Returns the squared error.
float fit_q4k_sub_block(const float* x, int n, float& best_scale, float& best_min) {
  float lo = x[0], hi = x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, lo);
  best_min = -lo;
  best_scale = (hi - lo) / 15.0f;
  if (best_scale == 0.0f) return 0.0f;  // all values equal lo (= -min): exact with any q

  auto error_of = [&](float scale, float min) {
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int q = std::clamp(nearest_int((x[i] + min) / scale), 0, 15);
      const float e = scale * static_cast<float>(q) - min - x[i];
      err += e * e;
    }
    return err;
  };
  float best_err = error_of(best_scale, best_min);
  float scale = best_scale, min = best_min;
  for (int iter = 0; iter < 6; ++iter) {
    // Least squares of x = a * q + b over the current assignment, with the constraint b <= 0.
    double sq = 0, sx = 0, sqq = 0, sqx = 0;
    for (int i = 0; i < n; ++i) {
      const double q = std::clamp(nearest_int((x[i] + min) / scale), 0, 15);
      sq += q;
      sx += x[i];
      sqq += q * q;
      sqx += q * x[i];
    }
    const double det = n * sqq - sq * sq;
    if (det <= 0) break;
    double a = (n * sqx - sq * sx) / det;
    double b = (sx - a * sq) / n;
    if (b > 0) {
      b = 0;
      a = sqx / sqq;
    }
    if (!(a > 0)) break;
    scale = static_cast<float>(a);
    min = static_cast<float>(-b);
    const float err = error_of(scale, min);
    if (!(err < best_err)) break;
    best_err = err;
    best_scale = scale;
    best_min = min;
  }
  return best_err;
}

void quantize_q4_k(const float* src, void* dst, int64_t n) {
  constexpr int kSub = kQK_K / 32;
  auto* block = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b, block += kQ4KBytes, src += kQK_K) {
    float scales[kSub], mins[kSub];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < kSub; ++j) {
      fit_q4k_sub_block(src + 32 * j, 32, scales[j], mins[j]);
      max_scale = std::max(max_scale, scales[j]);
      max_min = std::max(max_min, mins[j]);
    }
    // Super-block scales first, so the 6-bit sub-block scales are rounded against the stored f16 values.
    store_f16(block + kQ4K_D, max_scale / 63.0f);
    store_f16(block + kQ4K_DMin, max_min / 63.0f);
    const float d = load_f16(block + kQ4K_D);
    const float dmin = load_f16(block + kQ4K_DMin);

    uint8_t* packed = block + kQ4K_Scales;
    std::memset(packed, 0, 12);
    int ls[kSub], lm[kSub];
    for (int j = 0; j < kSub; ++j) {
      ls[j] = d > 0.0f ? std::clamp(nearest_int(scales[j] / d), 0, 63) : 0;
      lm[j] = dmin > 0.0f ? std::clamp(nearest_int(mins[j] / dmin), 0, 63) : 0;
      if (j < 4) {
        packed[j] |= static_cast<uint8_t>(ls[j]);
        packed[j + 4] |= static_cast<uint8_t>(lm[j]);
      } else {
        packed[j + 4] = static_cast<uint8_t>((ls[j] & 0x0f) | ((lm[j] & 0x0f) << 4));
        packed[j - 4] |= static_cast<uint8_t>((ls[j] >> 4) << 6);
        packed[j] |= static_cast<uint8_t>((lm[j] >> 4) << 6);
      }
    }

    // Final levels against the scales as they will be decoded.
    uint8_t levels[kQK_K];
    for (int j = 0; j < kSub; ++j) {
      const float d_j = d * static_cast<float>(ls[j]);
      const float m_j = dmin * static_cast<float>(lm[j]);
      for (int l = 0; l < 32; ++l) {
        const int q = d_j > 0.0f ? std::clamp(nearest_int((src[32 * j + l] + m_j) / d_j), 0, 15) : 0;
        levels[32 * j + l] = static_cast<uint8_t>(q);
      }
    }
    uint8_t* qs = block + kQ4K_Qs;
    for (int c = 0; c < kSub / 2; ++c)
      for (int l = 0; l < 32; ++l)
        qs[32 * c + l] = static_cast<uint8_t>(levels[64 * c + l] | (levels[64 * c + 32 + l] << 4));
  }
}

// --- Q6_K ------------------------------------------------------------------------------------------------

void dequantize_q6_k(const void* src, float* dst, int64_t n) {
  const auto* block = static_cast<const uint8_t*>(src);
  for (int64_t b = 0; b < n / kQK_K; ++b, block += kQ6KBytes, dst += kQK_K) {
    const float d = load_f16(block + kQ6K_D);
    // Each half of 128 values uses 64 bytes of ql and 32 of qh. Within a half, quarter r (32 values) takes
    // its low 4 bits from ql[32 * (r % 2) + l], low nibble for r < 2 and high nibble otherwise, and its
    // high 2 bits from bits 2r..2r+1 of qh[l].
    for (int half = 0; half < 2; ++half) {
      const uint8_t* ql = block + kQ6K_Ql + 64 * half;
      const uint8_t* qh = block + kQ6K_Qh + 32 * half;
      for (int r = 0; r < 4; ++r) {
        const int nibble_shift = (r / 2) * 4;
        for (int l0 = 0; l0 < 32; l0 += 16) {  // one int8 scale per 16 values
          const int i0 = 128 * half + 32 * r + l0;
          const float d_i = d * static_cast<float>(static_cast<int8_t>(block[kQ6K_Scales + i0 / 16]));
          for (int l = l0; l < l0 + 16; ++l) {
            const int low = (ql[32 * (r % 2) + l] >> nibble_shift) & 0x0f;
            const int high = (qh[l] >> (2 * r)) & 3;
            const int q = (low | (high << 4)) - 32;
            dst[i0 + l - l0] = d_i * static_cast<float>(q);
          }
        }
      }
    }
  }
}

// Best signed scale for x ~= scale * q, q in [-32, 31], over a few candidates: the value of largest
// magnitude mapped to -32 (using the wider negative side) or to +31, and slightly smaller ratios that
// trade clipping of that one value for finer steps; then a least-squares refit of the best one.
float fit_q6k_sub_block(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (amax < std::fabs(x[i])) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (amax == 0.0f) return 0.0f;
  auto error_of = [&](float scale) {
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const int q = std::clamp(nearest_int(x[i] / scale), -32, 31);
      const float e = scale * static_cast<float>(q) - x[i];
      err += e * e;
    }
    return err;
  };
  float best_scale = max / -32.0f;
  float best_err = error_of(best_scale);
  for (int k = 0; k <= 16; ++k) {
    for (const float levels : {-32.0f + 0.25f * k, 31.0f - 0.25f * k}) {
      const float scale = max / levels;
      const float err = error_of(scale);
      if (err < best_err) {
        best_err = err;
        best_scale = scale;
      }
    }
  }
  double sqq = 0, sqx = 0;
  for (int i = 0; i < n; ++i) {
    const double q = std::clamp(nearest_int(x[i] / best_scale), -32, 31);
    sqq += q * q;
    sqx += q * x[i];
  }
  if (sqq > 0) {
    const auto refit = static_cast<float>(sqx / sqq);
    if (refit != 0.0f && error_of(refit) < best_err) best_scale = refit;
  }
  return best_scale;
}

void quantize_q6_k(const float* src, void* dst, int64_t n) {
  constexpr int kSub = kQK_K / 16;
  auto* block = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < n / kQK_K; ++b, block += kQ6KBytes, src += kQK_K) {
    float scales[kSub];
    float max_abs_scale = 0.0f;
    for (int j = 0; j < kSub; ++j) {
      scales[j] = fit_q6k_sub_block(src + 16 * j, 16);
      max_abs_scale = std::max(max_abs_scale, std::fabs(scales[j]));
    }
    store_f16(block + kQ6K_D, max_abs_scale / 127.0f);
    const float d = load_f16(block + kQ6K_D);

    uint8_t levels[kQK_K];  // q + 32, in [0, 63]
    for (int j = 0; j < kSub; ++j) {
      const int sc = d > 0.0f ? std::clamp(nearest_int(scales[j] / d), -128, 127) : 0;
      block[kQ6K_Scales + j] = static_cast<uint8_t>(static_cast<int8_t>(sc));
      const float d_j = d * static_cast<float>(sc);
      for (int l = 0; l < 16; ++l) {
        const int q = d_j != 0.0f ? std::clamp(nearest_int(src[16 * j + l] / d_j), -32, 31) : 0;
        levels[16 * j + l] = static_cast<uint8_t>(q + 32);
      }
    }
    for (int half = 0; half < 2; ++half) {
      uint8_t* ql = block + kQ6K_Ql + 64 * half;
      uint8_t* qh = block + kQ6K_Qh + 32 * half;
      const uint8_t* lv = levels + 128 * half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((lv[l] & 0x0f) | ((lv[l + 64] & 0x0f) << 4));
        ql[l + 32] = static_cast<uint8_t>((lv[l + 32] & 0x0f) | ((lv[l + 96] & 0x0f) << 4));
        qh[l] = static_cast<uint8_t>((lv[l] >> 4) | ((lv[l + 32] >> 4) << 2) | ((lv[l + 64] >> 4) << 4) |
                                     ((lv[l + 96] >> 4) << 6));
      }
    }
  }
}

// --- Dot products of block types --------------------------------------------------------------------------

// Decodes one block at a time into a stack buffer and feeds the fixed-order accumulator; block sizes are
// multiples of kLanes, so the lanes see exactly what dot_f32 of the whole dequantized row would.
template <void (*Dequantize)(const void*, float*, int64_t), int kBlock, size_t kBytes>
float dot_block_row(const void* row, const float* x, int64_t n) {
  static_assert(kBlock % kLanes == 0);
  const auto* block = static_cast<const uint8_t*>(row);
  float buf[kBlock];
  DotAccumulator acc;
  for (int64_t i = 0; i < n; i += kBlock, block += kBytes) {
    Dequantize(block, buf, kBlock);
    acc.add_lanes(buf, x + i, kBlock);
  }
  return acc.result();
}

// Indexed by DType; I32 has no kernels.
static_assert(static_cast<int>(DType::F32) == 0 && static_cast<int>(DType::F16) == 1 &&
              static_cast<int>(DType::BF16) == 2 && static_cast<int>(DType::Q8_0) == 3 &&
              static_cast<int>(DType::Q4_0) == 4 && static_cast<int>(DType::Q4_K) == 5 &&
              static_cast<int>(DType::Q6_K) == 6 && static_cast<int>(DType::I32) == 7);
constexpr std::array<RowKernels, 7> kKernels = {{
    {dequantize_f32, quantize_f32, dot_scalar_row<dequantize_f32, 4>},
    {dequantize_f16, quantize_f16, dot_scalar_row<dequantize_f16, 2>},
    {dequantize_bf16, quantize_bf16, dot_scalar_row<dequantize_bf16, 2>},
    {dequantize_q8_0, quantize_q8_0, dot_block_row<dequantize_q8_0, kQK8_0, kQ8_0Bytes>},
    {dequantize_q4_0, quantize_q4_0, dot_block_row<dequantize_q4_0, kQK4_0, kQ4_0Bytes>},
    {dequantize_q4_k, quantize_q4_k, dot_block_row<dequantize_q4_k, kQK_K, kQ4KBytes>},
    {dequantize_q6_k, quantize_q6_k, dot_block_row<dequantize_q6_k, kQK_K, kQ6KBytes>},
}};

void check_row(DType t, int64_t n) {
  ARIADNE_CHECK(is_weight_type(t), fmt::format("no row kernels for dtype {}", dtype_name(t)));
  ARIADNE_CHECK(n >= 0 && n % block_size(t) == 0,
                fmt::format("row length {} is not a multiple of the {} block size {}", n, dtype_name(t),
                            block_size(t)));
}

}  // namespace

bool is_weight_type(DType t) {
  return static_cast<size_t>(t) < kKernels.size();
}

const RowKernels& row_kernels(DType t) {
  ARIADNE_CHECK(is_weight_type(t), fmt::format("no row kernels for dtype {}", dtype_name(t)));
  return kKernels[static_cast<size_t>(t)];
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  check_row(t, n);
  kKernels[static_cast<size_t>(t)].dequantize(src, dst, n);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  check_row(t, n);
  kKernels[static_cast<size_t>(t)].quantize(src, dst, n);
}

float dot_row(DType t, const void* row, const float* x, int64_t n) {
  check_row(t, n);
  return kKernels[static_cast<size_t>(t)].dot(row, x, n);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  const int64_t full = n - n % kLanes;
  DotAccumulator acc;
  acc.add_lanes(a, b, full);
  acc.add_tail(a + full, b + full, n - full);
  return acc.result();
}

void q4k_scale_min(int j, const uint8_t* s, int& scale, int& min) {
  if (j < 4) {
    scale = s[j] & 63;
    min = s[j + 4] & 63;
  } else {
    scale = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

}  // namespace ariadne::cpu
