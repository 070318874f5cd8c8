// Tests of the CPU weight-type kernels (kernels/cpu/quants.h, kernels/cpu/matmul.h) against naive
// reference code written here from the block layouts (quants.h, ggml-common.h), independently of the
// kernels, plus a few values produced by llama.cpp's gguf-py (see kGgufPy* below).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/half.h"
#include "core/thread_pool.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/packed.h"
#include "kernels/cpu/quants.h"

namespace ariadne {
namespace {

using cpu::dequantize_row;
using cpu::dot_f32;
using cpu::dot_row;
using cpu::quantize_row;

constexpr DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q8_0,
                                  DType::Q4_0, DType::Q4_K, DType::Q6_K};
constexpr DType kQuantTypes[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K};

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// IEEE half from its definition, independent of core/half.h.
float naive_f16(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 31, mant = h & 1023;
  double v;
  if (exp == 31) {
    v = mant ? std::nan("") : INFINITY;
  } else if (exp == 0) {
    v = std::ldexp(static_cast<double>(mant), -24);
  } else {
    v = std::ldexp(static_cast<double>(1024 + mant), exp - 25);
  }
  return static_cast<float>(sign ? -v : v);
}
float naive_bf16(uint16_t h) {
  return float_of(static_cast<uint32_t>(h) << 16);
}

uint16_t read_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}  // little-endian

// Naive decoder: one element at a time, straight from the layout description. The float operations
// follow ggml's dequantize_row_* (Q4_K: (d*sc)*q - dmin*m; Q6_K: (d*sc)*q).
std::vector<float> naive_decode(DType t, const uint8_t* data, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    float v = 0.0f;
    switch (t) {
      case DType::F32:
        std::memcpy(&v, data + 4 * i, 4);
        break;
      case DType::F16:
        v = naive_f16(read_u16(data + 2 * i));
        break;
      case DType::BF16:
        v = naive_bf16(read_u16(data + 2 * i));
        break;
      case DType::Q8_0: {
        const uint8_t* blk = data + 34 * (i / 32);
        v = static_cast<float>(static_cast<int8_t>(blk[2 + i % 32])) * naive_f16(read_u16(blk));
        break;
      }
      case DType::Q4_0: {
        const uint8_t* blk = data + 18 * (i / 32);
        const int e = static_cast<int>(i % 32);
        const int nibble = e < 16 ? (blk[2 + e] & 15) : (blk[2 + e - 16] >> 4);
        v = static_cast<float>(nibble - 8) * naive_f16(read_u16(blk));
        break;
      }
      case DType::Q4_K: {
        const uint8_t* blk = data + 144 * (i / 256);
        const int e = static_cast<int>(i % 256), j = e / 32;
        // scales bytes as three rows of four: low bits of scales 0-3 (top 2 bits: high bits of scales
        // 4-7), low bits of mins 0-3 (top 2 bits: high bits of mins 4-7), low|high nibbles of 4-7.
        const uint8_t* row_d = blk + 4;
        const uint8_t* row_m = blk + 8;
        const uint8_t* row_md = blk + 12;
        const int k = j % 4;
        const int sc = j < 4 ? (row_d[k] & 63) : ((row_md[k] & 15) | ((row_d[k] >> 6) << 4));
        const int mn = j < 4 ? (row_m[k] & 63) : ((row_md[k] >> 4) | ((row_m[k] >> 6) << 4));
        const uint8_t byte = blk[16 + 32 * (j / 2) + e % 32];
        const int q = j % 2 ? byte >> 4 : byte & 15;
        const float d_j = naive_f16(read_u16(blk)) * static_cast<float>(sc);
        const float m_j = naive_f16(read_u16(blk + 2)) * static_cast<float>(mn);
        const float p = d_j * static_cast<float>(q);
        v = p - m_j;
        break;
      }
      case DType::Q6_K: {
        const uint8_t* blk = data + 210 * (i / 256);
        const int e = static_cast<int>(i % 256);
        const int half = e / 128, quarter = (e % 128) / 32, l = e % 32;
        const int low = (blk[64 * half + 32 * (quarter % 2) + l] >> (quarter >= 2 ? 4 : 0)) & 15;
        const int high = (blk[128 + 32 * half + l] >> (2 * quarter)) & 3;
        const int q = (low | (high << 4)) - 32;
        const float d_i =
            naive_f16(read_u16(blk + 208)) * static_cast<float>(static_cast<int8_t>(blk[192 + e / 16]));
        v = d_i * static_cast<float>(q);
        break;
      }
      default:
        ADD_FAILURE() << "no naive decoder for " << dtype_name(t);
    }
    out[static_cast<size_t>(i)] = v;
  }
  return out;
}

// ggml's reference quantizers, written from their rounding rules (ggml-quants.c quantize_row_*_ref).
std::vector<uint8_t> naive_quantize_q8_0(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = x.data() + 32 * b;
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(v[j]));
    const float d = amax / 127;
    const float id = d == 0.0f ? 0.0f : 1.0f / d;
    const uint16_t dh = f32_to_f16(d);
    out.push_back(static_cast<uint8_t>(dh & 255));
    out.push_back(static_cast<uint8_t>(dh >> 8));
    for (int j = 0; j < 32; ++j) {
      const float s = v[j] * id;
      out.push_back(static_cast<uint8_t>(static_cast<int>(std::roundf(s))));
    }
  }
  return out;
}

std::vector<uint8_t> naive_quantize_q4_0(const std::vector<float>& x) {
  std::vector<uint8_t> out;
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const float* v = x.data() + 32 * b;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(v[j]) > amax) {
        amax = std::fabs(v[j]);
        max = v[j];
      }
    }
    const float d = max / -8;
    const float id = d == 0.0f ? 0.0f : 1.0f / d;
    const uint16_t dh = f32_to_f16(d);
    out.push_back(static_cast<uint8_t>(dh & 255));
    out.push_back(static_cast<uint8_t>(dh >> 8));
    int q[32];
    for (int j = 0; j < 32; ++j) {
      const float s = v[j] * id;
      q[j] = std::min(15, static_cast<int>(s + 8.5f));  // s + 8.5 > 0: int conversion truncates like (int8)
    }
    for (int j = 0; j < 16; ++j) out.push_back(static_cast<uint8_t>(q[j] | (q[j + 16] << 4)));
  }
  return out;
}

std::vector<float> gaussian(std::mt19937& rng, size_t n, float sigma = 1.0f) {
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// Random block bytes with sane f16 scale fields (random bytes there could be inf / nan).
std::vector<uint8_t> random_blocks(std::mt19937& rng, DType t, int n_blocks) {
  const size_t bytes = traits(t).block_bytes;
  std::vector<uint8_t> data(bytes * n_blocks);
  for (auto& b : data) b = static_cast<uint8_t>(rng() & 255);
  std::uniform_real_distribution<float> scale(-0.05f, 0.05f);
  auto put = [&](size_t off, float v) {
    const uint16_t h = f32_to_f16(v);
    data[off] = static_cast<uint8_t>(h & 255);
    data[off + 1] = static_cast<uint8_t>(h >> 8);
  };
  for (int b = 0; b < n_blocks; ++b) {
    const size_t base = bytes * b;
    switch (t) {
      case DType::Q8_0:
      case DType::Q4_0:
        put(base, scale(rng));
        break;
      case DType::Q4_K:
        put(base, std::fabs(scale(rng)));
        put(base + 2, std::fabs(scale(rng)));
        break;
      case DType::Q6_K:
        put(base + 208, scale(rng));
        break;
      default:
        break;
    }
  }
  return data;
}

void expect_bits_equal(const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << " at " << i;
    } else {
      ASSERT_EQ(bits_of(got[i]), bits_of(want[i]))
          << what << " at " << i << ": " << got[i] << " vs " << want[i];
    }
  }
}

uint64_t fnv1a(const std::vector<float>& v) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (float f : v) {
    const uint32_t u = bits_of(f);
    for (int k = 0; k < 4; ++k) {
      h ^= (u >> (8 * k)) & 255;
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

// ---------------------------------------------------------------------------------------------------------
// F32 / F16 / BF16

TEST(QuantScalar, DecodesEveryF16AndBf16BitPattern) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint8_t bytes[3] = {0, static_cast<uint8_t>(h & 255), static_cast<uint8_t>(h >> 8)};  // unaligned
    float f16 = 0, bf16 = 0;
    dequantize_row(DType::F16, bytes + 1, &f16, 1);
    dequantize_row(DType::BF16, bytes + 1, &bf16, 1);
    const float want16 = naive_f16(static_cast<uint16_t>(h)), want_bf = naive_bf16(static_cast<uint16_t>(h));
    if (std::isnan(want16)) {
      EXPECT_TRUE(std::isnan(f16)) << h;
    } else {
      ASSERT_EQ(bits_of(f16), bits_of(want16)) << "f16 " << h;
    }
    if (std::isnan(want_bf)) {
      EXPECT_TRUE(std::isnan(bf16)) << h;
    } else {
      ASSERT_EQ(bits_of(bf16), bits_of(want_bf)) << "bf16 " << h;
    }
  }
}

TEST(QuantScalar, RepresentableValuesRoundTripExactly) {
  for (uint32_t h = 0; h < 65536; ++h) {
    for (DType t : {DType::F16, DType::BF16}) {
      const float v =
          t == DType::F16 ? naive_f16(static_cast<uint16_t>(h)) : naive_bf16(static_cast<uint16_t>(h));
      if (std::isnan(v)) continue;
      uint8_t out[2];
      quantize_row(t, &v, out, 1);
      ASSERT_EQ(read_u16(out), h) << dtype_name(t) << " value " << v;
    }
  }
}

TEST(QuantScalar, RoundsToNearest) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> mag(-14.0f, 15.0f);  // exponents inside the f16 normal range
  for (int i = 0; i < 20000; ++i) {
    const float x = (rng() & 1 ? 1.0f : -1.0f) * std::exp2(mag(rng));
    for (DType t : {DType::F16, DType::BF16}) {
      auto decode = [&](uint32_t h) {
        return t == DType::F16 ? naive_f16(static_cast<uint16_t>(h)) : naive_bf16(static_cast<uint16_t>(h));
      };
      uint8_t out[2];
      quantize_row(t, &x, out, 1);
      const uint16_t h = read_u16(out);
      const double err = std::fabs(static_cast<double>(decode(h)) - x);
      // Neighbours in magnitude (same sign) are no closer.
      EXPECT_LE(err, std::fabs(static_cast<double>(decode(h + 1u)) - x)) << dtype_name(t) << " " << x;
      if ((h & 0x7fff) != 0) {
        EXPECT_LE(err, std::fabs(static_cast<double>(decode(h - 1u)) - x)) << dtype_name(t) << " " << x;
      }
    }
  }
}

TEST(QuantScalar, F32IsACopy) {
  std::mt19937 rng(2);
  const auto x = gaussian(rng, 19);
  std::vector<uint8_t> buf(19 * 4 + 1);
  quantize_row(DType::F32, x.data(), buf.data() + 1, 19);
  std::vector<float> back(19);
  dequantize_row(DType::F32, buf.data() + 1, back.data(), 19);
  expect_bits_equal(back, x, "f32");
}

// ---------------------------------------------------------------------------------------------------------
// Dequantization

TEST(QuantDequantize, MatchesNaiveDecoderBitForBit) {
  std::mt19937 rng(3);
  for (DType t : kQuantTypes) {
    const int n_blocks = 5;
    const int64_t n = static_cast<int64_t>(n_blocks) * block_size(t);
    const auto blocks = random_blocks(rng, t, n_blocks);
    std::vector<uint8_t> unaligned(blocks.size() + 3);
    std::copy(blocks.begin(), blocks.end(), unaligned.begin() + 3);
    std::vector<float> got(static_cast<size_t>(n));
    dequantize_row(t, unaligned.data() + 3, got.data(), n);
    SCOPED_TRACE(std::string(dtype_name(t)));
    expect_bits_equal(got, naive_decode(t, blocks.data(), n), "dequantize_row");
  }
}

// Generated with llama.cpp's gguf-py (gguf/quants.py, numpy 1.24):
//   blk = bytearray(((k * MUL + ADD) & 0xff) for k in range(2 * BLOCK_BYTES)), then the f16 fields set to
//   the bit patterns below (little-endian); y = gguf.quants.dequantize(np.frombuffer(blk, np.uint8), TYPE);
//   FNV-1a 64 over the little-endian bytes of y's float32 bits, and y.view(np.uint32)[::37].
std::vector<uint8_t> pattern_bytes(size_t n, int mul, int add) {
  std::vector<uint8_t> v(n);
  for (size_t k = 0; k < n; ++k) v[k] = static_cast<uint8_t>((k * mul + add) & 0xff);
  return v;
}
void put_u16(std::vector<uint8_t>& v, size_t off, uint16_t h) {
  v[off] = static_cast<uint8_t>(h & 255);
  v[off + 1] = static_cast<uint8_t>(h >> 8);
}

TEST(QuantDequantize, MatchesGgufPyQ4K) {
  auto blk = pattern_bytes(2 * 144, 73, 41);  // MUL 73, ADD 41
  put_u16(blk, 0, 0x211f);                    // d, dmin of block 0
  put_u16(blk, 2, 0x1c3a);
  put_u16(blk, 144, 0x2e01);  // block 1
  put_u16(blk, 146, 0x2403);
  std::vector<float> y(512);
  dequantize_row(DType::Q4_K, blk.data(), y.data(), 512);
  const uint32_t spots[] = {0x3f77cf00, 0x3e4d8400, 0x3f6af600, 0x3f402a00, 0x40282740,
                            0x3e8c7900, 0x4075eca0, 0x412ddcd0, 0x405a1e80, 0x4275b83c,
                            0xbee0a800, 0x4171a220, 0xbf78ba00, 0xbec09000};
  for (size_t k = 0; k < std::size(spots); ++k) EXPECT_EQ(bits_of(y[37 * k]), spots[k]) << "index " << 37 * k;
  EXPECT_EQ(fnv1a(y), 0xd8ac1e6360c90e81ull);
}

TEST(QuantDequantize, MatchesGgufPyQ6K) {
  auto blk = pattern_bytes(2 * 210, 151, 7);  // MUL 151, ADD 7
  put_u16(blk, 208, 0x1a5b);                  // d of block 0
  put_u16(blk, 210 + 208, 0xa7c1);            // d of block 1 (negative)
  std::vector<float> y(512);
  dequantize_row(DType::Q6_K, blk.data(), y.data(), 512);
  const uint32_t spots[] = {0x40a229ec, 0x40685f30, 0xc0814b48, 0x3f155a80, 0xc0c7ffa8,
                            0x3fee5480, 0x3ec83280, 0xc1334f20, 0xc291cf4e, 0xc1d769c8,
                            0x425c8070, 0xc1a8a5c0, 0x41ccfe70, 0xc254245c};
  for (size_t k = 0; k < std::size(spots); ++k) EXPECT_EQ(bits_of(y[37 * k]), spots[k]) << "index " << 37 * k;
  EXPECT_EQ(fnv1a(y), 0xb4a030e2cb2dc57bull);
}

TEST(QuantDequantize, RejectsPartialBlocksAndNonWeightTypes) {
  std::vector<uint8_t> src(1024);
  std::vector<float> dst(300);
  EXPECT_THROW(dequantize_row(DType::Q4_K, src.data(), dst.data(), 255), Error);
  EXPECT_THROW(dequantize_row(DType::Q8_0, src.data(), dst.data(), 33), Error);
  EXPECT_THROW(dequantize_row(DType::I32, src.data(), dst.data(), 4), Error);
}

// ---------------------------------------------------------------------------------------------------------
// Quantization

// Inputs of exactly representable values (so numpy and C++ see the same floats); expected bytes from
//   gguf.quants.quantize(np.array(x, np.float32), GGMLQuantizationType.Q8_0 / Q4_0).tobytes().
std::vector<float> q8_0_gguf_inputs() {
  std::vector<float> x;
  for (int j = 0; j < 32; ++j) x.push_back(static_cast<float>((j * 37 % 101) - 50) / 16.0f);
  // amax 127 gives d = 1: exact halves show ties rounding away from zero.
  for (float v : {127.0f, 2.5f, -2.5f, 0.5f, -0.5f, 1.5f, -1.5f, 126.5f}) x.push_back(v);
  for (int j = 8; j < 32; ++j) x.push_back(static_cast<float>(j - 12) * 0.5f);
  for (int j = 0; j < 32; ++j) x.push_back(static_cast<float>((j * j * 13 % 1001) - 500) / 64.0f);
  return x;
}
constexpr uint8_t kGgufPyQ8_0[102] = {
    0x4d, 0x26, 0x81, 0xdf, 0x3d, 0x9a, 0xf8, 0x56, 0xb4, 0x12, 0x70, 0xcd, 0x2b, 0x89, 0xe7, 0x45, 0xa2,
    0x00, 0x5e, 0xbb, 0x19, 0x77, 0xd5, 0x33, 0x90, 0xee, 0x4c, 0xaa, 0x08, 0x66, 0xc3, 0x21, 0x7f, 0xdc,
    0x00, 0x3c, 0x7f, 0x03, 0xfd, 0x01, 0xff, 0x02, 0xfe, 0x7f, 0xfe, 0xfe, 0xff, 0xff, 0x00, 0x01, 0x01,
    0x02, 0x02, 0x03, 0x03, 0x04, 0x04, 0x05, 0x05, 0x06, 0x06, 0x07, 0x07, 0x08, 0x08, 0x09, 0x09, 0x0a,
    0xe0, 0x2b, 0x81, 0x84, 0x8e, 0x9f, 0xb6, 0xd4, 0xf8, 0x23, 0x54, 0x8e, 0xcd, 0x12, 0x5e, 0xb3, 0x0c,
    0x6b, 0xd4, 0x41, 0xb6, 0x30, 0xb3, 0x3a, 0xca, 0x5e, 0xfb, 0x9f, 0x47, 0xf8, 0xaf, 0x6b, 0x30, 0xfb};

std::vector<float> q4_0_gguf_inputs() {
  std::vector<float> x;
  for (int j = 0; j < 32; ++j) x.push_back(static_cast<float>((j * 37 % 101) - 50) / 16.0f);
  // -8 comes before +8: d = 1, and +8 clamps to level 15.
  for (float v : {0.5f, -8.0f, 8.0f, -0.5f, 1.5f, -7.5f, 7.5f, 3.5f}) x.push_back(v);
  for (int j = 8; j < 32; ++j) x.push_back(static_cast<float>(j - 20) * 0.5f);
  // +8 comes first: d = -1.
  for (float v : {8.0f, 1.0f, -8.0f}) x.push_back(v);
  for (int j = 3; j < 32; ++j) x.push_back(static_cast<float>((j * j * 13 % 1001) - 500) / 128.0f);
  return x;
}
constexpr uint8_t kGgufPyQ4_0[54] = {0x40, 0x36, 0xe0, 0x46, 0xac, 0xf2, 0x58, 0xbd, 0x13, 0x79, 0xdf,
                                     0x35, 0x8b, 0xe0, 0x46, 0xac, 0xf2, 0x68, 0x00, 0x3c, 0x69, 0x70,
                                     0x7f, 0x88, 0x8a, 0x91, 0x9f, 0xac, 0xa2, 0xb3, 0xb3, 0xc4, 0xc4,
                                     0xd5, 0xd5, 0xe6, 0x00, 0xbc, 0x90, 0x67, 0xaf, 0x7b, 0xaa, 0x69,
                                     0xa8, 0x57, 0x85, 0xbc, 0x6a, 0x87, 0xa5, 0x5a, 0x78, 0x85};

TEST(QuantQuantize, Q8_0MatchesGgufPy) {
  const auto x = q8_0_gguf_inputs();
  std::vector<uint8_t> out(102);
  quantize_row(DType::Q8_0, x.data(), out.data(), 96);
  EXPECT_EQ(out, std::vector<uint8_t>(std::begin(kGgufPyQ8_0), std::end(kGgufPyQ8_0)));
  EXPECT_EQ(naive_quantize_q8_0(x), out);  // the test's own reference agrees too
}

TEST(QuantQuantize, Q4_0MatchesGgufPy) {
  const auto x = q4_0_gguf_inputs();
  std::vector<uint8_t> out(54);
  quantize_row(DType::Q4_0, x.data(), out.data(), 96);
  EXPECT_EQ(out, std::vector<uint8_t>(std::begin(kGgufPyQ4_0), std::end(kGgufPyQ4_0)));
  EXPECT_EQ(naive_quantize_q4_0(x), out);
}

// Blocks that stress the rounding rules: gaussian, all zero, one sign only, exact halves at d = 1, and
// +a / -a both of largest magnitude.
std::vector<float> tricky_blocks(std::mt19937& rng) {
  std::vector<float> x = gaussian(rng, 32 * 40, 0.3f);
  auto block = [&](int b) { return x.data() + 32 * b; };
  std::fill(block(1), block(2), 0.0f);
  for (int j = 0; j < 32; ++j) block(2)[j] = std::fabs(block(2)[j]);
  for (int j = 0; j < 32; ++j) block(3)[j] = -std::fabs(block(3)[j]);
  std::uniform_int_distribution<int> halves(-254, 254);
  for (int b = 4; b < 8; ++b) {
    // Odd: amax 127 (q8_0 d = 1); even: -8 is the largest magnitude (q4_0 d = 1). Halves are ties.
    for (int j = 0; j < 32; ++j)
      block(b)[j] = static_cast<float>(b % 2 ? halves(rng) : halves(rng) % 16) * 0.5f;
    block(b)[rng() % 32] = b % 2 ? 127.0f : -8.0f;
  }
  for (int j = 0; j < 32; ++j) block(8)[j] = static_cast<float>(halves(rng) % 16) * 0.5f;
  block(8)[3] = 8.0f;
  block(8)[9] = -8.0f;
  block(9)[0] = -1e-30f;  // tiny: d underflows in f16
  for (int j = 1; j < 32; ++j) block(9)[j] = 1e-31f * static_cast<float>(j);
  return x;
}

TEST(QuantQuantize, Q8_0MatchesNaiveReferenceByteForByte) {
  std::mt19937 rng(4);
  const auto x = tricky_blocks(rng);
  std::vector<uint8_t> out(x.size() / 32 * 34);
  quantize_row(DType::Q8_0, x.data(), out.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(out, naive_quantize_q8_0(x));
}

TEST(QuantQuantize, Q4_0MatchesNaiveReferenceByteForByte) {
  std::mt19937 rng(5);
  const auto x = tricky_blocks(rng);
  std::vector<uint8_t> out(x.size() / 32 * 18);
  quantize_row(DType::Q4_0, x.data(), out.data(), static_cast<int64_t>(x.size()));
  EXPECT_EQ(out, naive_quantize_q4_0(x));
}

// ---------------------------------------------------------------------------------------------------------
// Round trips

TEST(QuantRoundTrip, Q8_0ErrorWithinHalfAStep) {
  std::mt19937 rng(6);
  const auto x = tricky_blocks(rng);
  std::vector<uint8_t> q(x.size() / 32 * 34);
  quantize_row(DType::Q8_0, x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row(DType::Q8_0, q.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[32 * b + j]));
    const double d = amax / 127.0;
    const double d16 = naive_f16(read_u16(q.data() + 34 * b));
    // Half a step of the exact scale, plus up to 127 times the f16 rounding error of the stored scale.
    const double bound = 0.5 * d + 127.0 * std::fabs(d - d16) + 1e-6 * amax;
    for (int j = 0; j < 32; ++j) EXPECT_LE(std::fabs(y[32 * b + j] - x[32 * b + j]), bound) << b << "," << j;
  }
}

TEST(QuantRoundTrip, Q4_0ErrorWithinHalfAStep) {
  std::mt19937 rng(7);
  const auto x = tricky_blocks(rng);
  std::vector<uint8_t> q(x.size() / 32 * 18);
  quantize_row(DType::Q4_0, x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  dequantize_row(DType::Q4_0, q.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t b = 0; b < x.size() / 32; ++b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[32 * b + j]) > amax) {
        amax = std::fabs(x[32 * b + j]);
        max = x[32 * b + j];
      }
    }
    const double d = amax / 8.0;
    const double d16 = std::fabs(naive_f16(read_u16(q.data() + 18 * b)));
    const double slack = 8.0 * std::fabs(d - d16) + 1e-6 * amax;
    for (int j = 0; j < 32; ++j) {
      const double v = x[32 * b + j];
      // The largest magnitude maps to level -8; only values of the other sign beyond 7.5 steps clip
      // (level 8 -> 7), with an error of up to one step.
      const bool clips = max != 0.0f && v / (max / -8.0) > 7.5;
      const double bound = (clips ? d : 0.5 * d) + slack;
      EXPECT_LE(std::fabs(y[32 * b + j] - v), bound) << b << "," << j;
    }
  }
}

double rms(const std::vector<float>& v) {
  double s = 0;
  for (float f : v) s += static_cast<double>(f) * f;
  return std::sqrt(s / static_cast<double>(v.size()));
}

// K-quants use our own quantizer: check it produces valid blocks of good quality on several distributions.
TEST(QuantRoundTrip, KQuantsRmsError) {
  std::mt19937 rng(8);
  const int64_t n = 256 * 64;
  std::vector<std::vector<float>> inputs;
  inputs.push_back(gaussian(rng, n, 0.02f));
  std::vector<float> uniform(n), mixed = gaussian(rng, n, 1.0f), shifted = gaussian(rng, n, 0.5f);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : uniform) v = u(rng);
  for (int64_t i = 0; i < n; ++i)
    mixed[i] *= std::exp2(static_cast<float>((i / 32) % 6) - 3.0f);  // scales vary per sub-block
  for (auto& v : shifted) v += 0.7f;                                 // one-sided data
  inputs.push_back(uniform);
  inputs.push_back(mixed);
  inputs.push_back(shifted);
  for (DType t : {DType::Q4_K, DType::Q6_K}) {
    // Uniform step error is step / sqrt(12). Measured on these inputs: Q4_K 4-7.5% of the value RMS (Q4_0
    // gets 7-9%), Q6_K 1.2-1.7% (Q8_0 gets 0.4-0.6%).
    const double max_ratio = t == DType::Q4_K ? 0.09 : 0.02;
    for (const auto& x : inputs) {
      std::vector<uint8_t> q(row_bytes(t, n));
      quantize_row(t, x.data(), q.data(), n);
      std::vector<float> y(static_cast<size_t>(n));
      dequantize_row(t, q.data(), y.data(), n);
      std::vector<float> err(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(std::isfinite(y[i]));
        err[i] = y[i] - x[i];
      }
      EXPECT_LT(rms(err), max_ratio * rms(x)) << dtype_name(t) << " rms " << rms(x);
      // The naive decoder reads the same values: the blocks are well-formed.
      expect_bits_equal(naive_decode(t, q.data(), n), y, "naive decode of quantized blocks");
    }
  }
}

TEST(QuantRoundTrip, KQuantsZeroAndConstantBlocks) {
  for (DType t : {DType::Q4_K, DType::Q6_K}) {
    std::vector<float> x(512, 0.0f);
    std::fill(x.begin() + 256, x.end(), -0.25f);
    std::vector<uint8_t> q(row_bytes(t, 512));
    quantize_row(t, x.data(), q.data(), 512);
    std::vector<float> y(512);
    dequantize_row(t, q.data(), y.data(), 512);
    for (int i = 0; i < 256; ++i) ASSERT_EQ(y[i], 0.0f) << dtype_name(t) << " " << i;
    // A constant is one level times an f16 scale times a 6- or 8-bit sub-scale: exact up to their rounding.
    for (int i = 256; i < 512; ++i) ASSERT_NEAR(y[i], -0.25f, 2e-3) << dtype_name(t) << " " << i;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Dot products

std::vector<uint8_t> quantized(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(x.size())));
  quantize_row(t, x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

TEST(QuantDot, EqualsDotOfDequantizedRow) {
  std::mt19937 rng(9);
  for (DType t : kWeightTypes) {
    const std::vector<int64_t> lengths =
        block_size(t) == 1 ? std::vector<int64_t>{1, 5, 16, 255, 256, 1007} : std::vector<int64_t>{256, 1024};
    for (int64_t n : lengths) {
      const auto w = gaussian(rng, static_cast<size_t>(n));
      const auto x = gaussian(rng, static_cast<size_t>(n));
      const auto q = quantized(t, w);
      std::vector<uint8_t> unaligned(q.size() + 1);
      std::copy(q.begin(), q.end(), unaligned.begin() + 1);
      const auto deq = naive_decode(t, q.data(), n);
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n; ++i) {
        ref += static_cast<double>(deq[i]) * x[i];
        mag += std::fabs(static_cast<double>(deq[i]) * x[i]);
      }
      const float got = dot_row(t, unaligned.data() + 1, x.data(), n);
      EXPECT_NEAR(got, ref, 1e-5 * mag) << dtype_name(t) << " n=" << n;
      // The documented contract: bit-identical to the fixed-order f32 dot of the dequantized row.
      EXPECT_EQ(bits_of(got), bits_of(dot_f32(deq.data(), x.data(), n))) << dtype_name(t) << " n=" << n;
    }
  }
}

TEST(QuantDot, F32DotMatchesDouble) {
  std::mt19937 rng(10);
  for (int64_t n : {0, 1, 15, 16, 17, 100, 4099}) {
    const auto a = gaussian(rng, static_cast<size_t>(n));
    const auto b = gaussian(rng, static_cast<size_t>(n));
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      ref += static_cast<double>(a[i]) * b[i];
      mag += std::fabs(static_cast<double>(a[i]) * b[i]);
    }
    EXPECT_NEAR(dot_f32(a.data(), b.data(), n), ref, 1e-5 * mag + 1e-30) << n;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Matmul

struct MatmulCase {
  DType type;
  int64_t n_in, n_out, n_tokens;
  bool bias;
  bool exact = false;  // MatmulParams::exact
  float x_scale = 1.0f;
  bool packed = false;   // Q4_0 only: the weights also packed (packed.h) and matmul given only those
  float w_scale = 1.0f;  // sigma of the weights before quantization (1e-6: subnormal f16 scales)
  bool extreme = false;  // weight nibbles at 0 / 15 and activations at +-x_scale (every |q| = 127)
};

// A 64-byte aligned buffer (as the loader's) for packed weights.
struct AlignedBytes {
  std::vector<uint8_t> storage;
  uint8_t* data = nullptr;
  explicit AlignedBytes(size_t n) : storage(n + 64, 0xcd) {
    const auto base = reinterpret_cast<uintptr_t>(storage.data());
    data = storage.data() + ((64 - base % 64) % 64);
  }
};

// A Q4_0 row of extreme blocks: quant bytes drawn from all-low, all-high and mixed patterns, scales of
// either sign up to 2.
std::vector<uint8_t> extreme_q4_0_row(std::mt19937& rng, int64_t n) {
  constexpr uint8_t kBytes[] = {0x00, 0xff, 0x0f, 0xf0, 0x88, 0x80, 0x08};
  std::vector<uint8_t> row(static_cast<size_t>(n / 32) * 18);
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  for (size_t b = 0; b < row.size() / 18; ++b) {
    const uint16_t h = f32_to_f16(scale(rng));
    row[18 * b] = static_cast<uint8_t>(h & 255);
    row[18 * b + 1] = static_cast<uint8_t>(h >> 8);
    const bool uniform = rng() % 2 == 0;  // half the blocks hold one pattern throughout
    const uint8_t pick = kBytes[rng() % std::size(kBytes)];
    for (int j = 0; j < 16; ++j) row[18 * b + 2 + j] = uniform ? pick : kBytes[rng() % std::size(kBytes)];
  }
  return row;
}

// Weights with unaligned rows and padding between them, x and y with padded strides.
struct MatmulFixture {
  std::vector<uint8_t> w_storage;
  size_t w_offset = 1, w_stride = 0;
  std::vector<float> w_deq;  // [n_out][n_in], naive decode
  std::vector<float> x, bias;
  int64_t x_stride = 0, y_stride = 0;
  std::unique_ptr<AlignedBytes> packed;  // set when the case is packed

  MatmulFixture(const MatmulCase& c, std::mt19937& rng) {
    w_stride = row_bytes(c.type, c.n_in) + 3;
    w_storage.assign(w_offset + w_stride * c.n_out, 0xcd);
    for (int64_t o = 0; o < c.n_out; ++o) {
      const auto q = c.extreme ? extreme_q4_0_row(rng, c.n_in)
                               : quantized(c.type, gaussian(rng, static_cast<size_t>(c.n_in), c.w_scale));
      std::copy(q.begin(), q.end(), w_storage.begin() + static_cast<ptrdiff_t>(w_offset + w_stride * o));
      const auto d = naive_decode(c.type, q.data(), c.n_in);
      w_deq.insert(w_deq.end(), d.begin(), d.end());
    }
    x_stride = c.n_in + 5;
    y_stride = c.n_out + 3;
    x = gaussian(rng, static_cast<size_t>(x_stride * c.n_tokens), c.x_scale);
    if (c.extreme)
      for (float& v : x) v = v < 0.0f ? -c.x_scale : c.x_scale;
    bias = gaussian(rng, static_cast<size_t>(c.n_out));
    if (c.packed) {
      packed = std::make_unique<AlignedBytes>(cpu::q4_0_packed_bytes(c.n_out, c.n_in));
      cpu::pack_q4_0(w_storage.data() + w_offset, w_stride, c.n_out, c.n_in, packed->data);
    }
  }

  cpu::MatmulParams params(const MatmulCase& c, std::vector<float>& y) const {
    y.assign(static_cast<size_t>(y_stride * c.n_tokens), 12345.0f);  // sentinel in the stride padding
    cpu::MatmulParams p;
    p.w_type = c.type;
    p.w = w_storage.data() + w_offset;
    p.w_row_stride = w_stride;
    p.n_out = c.n_out;
    p.n_in = c.n_in;
    p.x = x.data();
    p.x_stride = x_stride;
    p.n_tokens = c.n_tokens;
    p.y = y.data();
    p.y_stride = y_stride;
    p.bias = c.bias ? bias.data() : nullptr;
    p.exact = c.exact;
    if (c.packed) {
      p.w = nullptr;  // the packed copy alone must do
      p.w_packed = packed->data;
    }
    return p;
  }
};

bool uses_q8_activations(const MatmulCase& c) {
  return !c.exact &&
         (c.type == DType::Q8_0 || c.type == DType::Q4_0 || c.type == DType::Q4_K || c.type == DType::Q6_K);
}

// What the kernels multiply quantized weights with: each 32 values rounded to d * q, d = max|x| / 127,
// q = nearest (ties to even) of x * (1 / d), written here from that definition; blocks with d below the
// smallest normal float are zeros.
std::vector<float> naive_q8_activations(const float* x, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; b += 32) {
    float amax = 0.0f;
    for (int64_t j = b; j < b + 32; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float inv = d >= std::numeric_limits<float>::min() ? 1.0f / d : 0.0f;
    for (int64_t j = b; j < b + 32; ++j) out[static_cast<size_t>(j)] = std::nearbyint(x[j] * inv) * d;
  }
  return out;
}

// Checks one case on the active instruction-set level.
void check_matmul_here(const MatmulCase& c, double rel_tol) {
  std::mt19937 rng(static_cast<uint32_t>(c.n_in * 131 + c.n_out * 7 + c.n_tokens + (c.bias ? 1 : 0)));
  const MatmulFixture f(c, rng);

  std::vector<float> y1;
  {
    ThreadPool pool(1);
    cpu::matmul(f.params(c, y1), pool);
  }
  for (int64_t t = 0; t < c.n_tokens; ++t) {
    const float* xt = f.x.data() + t * f.x_stride;
    const std::vector<float> xq =
        uses_q8_activations(c) ? naive_q8_activations(xt, c.n_in) : std::vector<float>(xt, xt + c.n_in);
    for (int64_t o = 0; o < f.y_stride; ++o) {
      const float got = y1[t * f.y_stride + o];
      if (o >= c.n_out) {
        EXPECT_EQ(got, 12345.0f) << "padding written at " << t << "," << o;
        continue;
      }
      double ref = c.bias ? f.bias[o] : 0.0, mag = std::fabs(ref);
      for (int64_t i = 0; i < c.n_in; ++i) {
        const double p = static_cast<double>(f.w_deq[o * c.n_in + i]) * xq[static_cast<size_t>(i)];
        ref += p;
        mag += std::fabs(p);
      }
      ASSERT_NEAR(got, ref, rel_tol * mag) << t << "," << o;
    }
  }

  for (int threads : {2, 3, 7}) {
    ThreadPool pool(threads);
    std::vector<float> y;
    cpu::matmul(f.params(c, y), pool);
    ASSERT_EQ(y.size(), y1.size());
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_EQ(bits_of(y[i]), bits_of(y1[i])) << threads << " threads at " << i;
  }

  // Each token of a batch equals the same token computed alone (decode path vs prefill path).
  if (c.n_tokens > 1) {
    ThreadPool pool(3);
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      MatmulCase single = c;
      single.n_tokens = 1;
      std::vector<float> y;
      cpu::MatmulParams p = f.params(single, y);
      p.x = f.x.data() + t * f.x_stride;
      cpu::matmul(p, pool);
      for (int64_t o = 0; o < c.n_out; ++o)
        ASSERT_EQ(bits_of(y[o]), bits_of(y1[t * f.y_stride + o])) << "token " << t << " row " << o;
    }
  }
}

// Every instruction-set level this machine runs (the scalar one first).
void check_matmul(const MatmulCase& c, double rel_tol = 1e-5) {
  for (cpu::Isa isa : cpu::runnable_isas()) {
    cpu::ScopedIsa scoped(isa);
    SCOPED_TRACE(
        fmt::format("{} {} n_in={} n_out={} n_tokens={} bias={} exact={} x_scale={} packed={} "
                    "w_scale={} extreme={}",
                    cpu::isa_name(isa), dtype_name(c.type), c.n_in, c.n_out, c.n_tokens, c.bias, c.exact,
                    c.x_scale, c.packed, c.w_scale, c.extreme));
    check_matmul_here(c, rel_tol);
  }
}

TEST(Matmul, AllTypesThreadCountsTokensAndBias) {
  for (DType t : kWeightTypes) {
    const int64_t n_in = block_size(t) == 1 ? 77 : 512;
    for (int64_t n_tokens : {1, 5, 9})
      for (bool bias : {false, true}) check_matmul({t, n_in, 37, n_tokens, bias});
  }
}

TEST(Matmul, ExactModeComputesWithTheDequantizedWeights) {
  for (DType t : kQuantTypes)
    for (int64_t n_tokens : {1, 6}) check_matmul({t, 512, 13, n_tokens, true, /*exact=*/true});
}

TEST(Matmul, ScalarTypesWithBlockMultipleRows) {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) check_matmul({t, 256, 9, 5, true});
}

TEST(Matmul, OddLengthsOfFloatRows) {
  // Tails of every length below the vector widths (8 and 16 lanes).
  for (int64_t n_in : {1, 7, 8, 15, 16, 17, 31, 33})
    for (DType t : {DType::F32, DType::F16, DType::BF16}) check_matmul({t, n_in, 6, 5, false});
}

TEST(Matmul, FloatTilesOfEveryShape) {
  // Float weights take tiles of up to 6 rows x 4 tokens (gemm.h; AVX2 computes them 2 tokens at a time):
  // 1..9 tokens give every column count and partial last tiles, the row counts every row remainder. Rows
  // of 63 values have full cache lines, a lone 16-value step and a masked tail. Each case also checks
  // thread counts and each token against itself decoded alone.
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int64_t n_out : {1, 2, 3, 4, 5, 6, 13})
      for (int64_t n_tokens = 1; n_tokens <= 9; ++n_tokens)
        check_matmul({t, 63, n_out, n_tokens, n_tokens % 2 == 0});
}

TEST(Matmul, LargeAndTinyMagnitudes) {
  // Activations near f32's range edges: 1e30 (products stay finite) and 1e-38 (denormal products).
  for (float scale : {1e30f, 1e-38f})
    for (DType t : kWeightTypes) {
      const int64_t n_in = block_size(t) == 1 ? 40 : 256;
      check_matmul({t, n_in, 5, 3, false, false, scale});
    }
}

TEST(Matmul, LongRowsUseSeveralPanels) {
  // 8192 values per row: panels of a few rows, so each thread walks several of them.
  check_matmul({DType::F16, 8192, 37, 3, true}, 1e-4);
  check_matmul({DType::Q4_K, 8192, 13, 2, false}, 1e-4);
  check_matmul({DType::Q8_0, 8192, 45, 5, true}, 1e-4);
}

TEST(Matmul, FewerRowsThanThreads) {
  check_matmul({DType::Q8_0, 64, 2, 4, true});
}

TEST(Matmul, IsaOverrideRefusesLevelsAboveTheMachine) {
  const auto levels = cpu::runnable_isas();
  ASSERT_FALSE(levels.empty());
  EXPECT_EQ(levels.front(), cpu::Isa::Scalar);
  EXPECT_EQ(levels.back(), cpu::best_isa());
  if (cpu::best_isa() != cpu::Isa::Avx512) {
    EXPECT_THROW(cpu::ScopedIsa{cpu::Isa::Avx512}, Error);
  }
  {
    cpu::ScopedIsa scalar(cpu::Isa::Scalar);
    EXPECT_EQ(cpu::active_isa(), cpu::Isa::Scalar);
  }
  EXPECT_EQ(cpu::active_isa(), cpu::best_isa());
}

TEST(Matmul, EmptyShapesDoNothing) {
  ThreadPool pool(2);
  cpu::MatmulParams p;
  p.w_type = DType::Q4_0;
  p.n_in = 32;
  p.n_out = 0;
  p.n_tokens = 3;
  EXPECT_NO_THROW(cpu::matmul(p, pool));
  p.n_out = 4;
  p.n_tokens = 0;
  EXPECT_NO_THROW(cpu::matmul(p, pool));
}

TEST(Matmul, RejectsBadParams) {
  ThreadPool pool(2);
  std::mt19937 rng(11);
  const MatmulCase c{DType::Q4_K, 256, 4, 2, false};
  const MatmulFixture f(c, rng);
  std::vector<float> y;
  auto p = f.params(c, y);
  EXPECT_NO_THROW(cpu::matmul(p, pool));

  auto bad = p;
  bad.n_in = 128;  // not a multiple of 256
  EXPECT_THROW(cpu::matmul(bad, pool), Error);
  bad = p;
  bad.w_row_stride = row_bytes(DType::Q4_K, 256) - 1;
  EXPECT_THROW(cpu::matmul(bad, pool), Error);
  bad = p;
  bad.x_stride = 255;
  EXPECT_THROW(cpu::matmul(bad, pool), Error);
  bad = p;
  bad.y_stride = 3;
  EXPECT_THROW(cpu::matmul(bad, pool), Error);
  bad = p;
  bad.x = nullptr;
  EXPECT_THROW(cpu::matmul(bad, pool), Error);
  bad = p;
  bad.w_type = DType::I32;
  EXPECT_THROW(cpu::matmul(bad, pool), Error);
}

TEST(Matmul, DequantizeRowsMatchesRowByRow) {
  std::mt19937 rng(12);
  for (DType t : kWeightTypes) {
    const MatmulCase c{t, block_size(t) == 1 ? 45 : 256, 11, 1, false};
    const MatmulFixture f(c, rng);
    for (int threads : {1, 4}) {
      ThreadPool pool(threads);
      std::vector<float> out(static_cast<size_t>(c.n_out * c.n_in), -1.0f);
      cpu::dequantize_rows(t, f.w_storage.data() + f.w_offset, f.w_stride, c.n_out, c.n_in, out.data(), pool);
      SCOPED_TRACE(std::string(dtype_name(t)));
      expect_bits_equal(out, f.w_deq, "dequantize_rows");
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Packed Q4_0 (kernels/cpu/packed.h)

// The layout, read back byte by byte from the description in packed.h.
TEST(MatmulPacked, LayoutIsTheDescribedTranspose) {
  std::mt19937 rng(21);
  for (int64_t n_rows : {1, 16, 37}) {
    for (int64_t n_cols : {32, 96, 256}) {
      SCOPED_TRACE(fmt::format("{} x {}", n_rows, n_cols));
      const size_t row_size = row_bytes(DType::Q4_0, n_cols), stride = row_size + 5;
      std::vector<uint8_t> src(stride * static_cast<size_t>(n_rows));
      for (auto& b : src) b = static_cast<uint8_t>(rng());
      const int64_t nb = n_cols / 32, groups = (n_rows + 15) / 16;
      const size_t group_bytes = cpu::q4_0_group_bytes(n_cols);
      EXPECT_EQ(group_bytes % 64, 0u);
      EXPECT_GE(group_bytes, static_cast<size_t>(16 * 18 * nb));
      EXPECT_LT(group_bytes, static_cast<size_t>(16 * 18 * nb + 64));
      ASSERT_EQ(cpu::q4_0_packed_bytes(n_rows, n_cols), group_bytes * static_cast<size_t>(groups));
      std::vector<uint8_t> packed(cpu::q4_0_packed_bytes(n_rows, n_cols), 0xcd);
      cpu::pack_q4_0(src.data(), stride, n_rows, n_cols, packed.data());
      for (int64_t g = 0; g < groups; ++g) {
        const uint8_t* group = packed.data() + static_cast<size_t>(g) * group_bytes;
        for (int64_t i = 0; i < 16; ++i) {
          const int64_t r = 16 * g + i;
          // Padding rows (r >= n_rows) are zeros.
          const std::vector<uint8_t> zeros(row_size, 0);
          const uint8_t* row = r < n_rows ? src.data() + static_cast<size_t>(r) * stride : zeros.data();
          for (int64_t b = 0; b < nb; ++b) {
            for (int e = 0; e < 16; ++e) {  // quant byte e of block b
              const uint8_t want = row[18 * b + 2 + e];
              ASSERT_EQ(group[256 * b + 64 * (e / 4) + 4 * i + e % 4], want) << r << " " << b << " " << e;
            }
            for (int e = 0; e < 2; ++e) {
              const uint8_t want = row[18 * b + e];
              ASSERT_EQ(group[256 * nb + 32 * b + 2 * i + e], want) << "scale of " << r << " " << b;
            }
          }
        }
        for (size_t k = static_cast<size_t>(288 * nb); k < group_bytes; ++k) ASSERT_EQ(group[k], 0) << k;
      }
      // Unpacking gives back every row's bytes.
      std::vector<uint8_t> back(row_size);
      for (int64_t r = 0; r < n_rows; ++r) {
        cpu::unpack_q4_0_row(packed.data(), n_cols, r, back.data());
        ASSERT_TRUE(std::equal(back.begin(), back.end(), src.begin() + static_cast<ptrdiff_t>(r * stride)))
            << "row " << r;
      }
      // Packing in slices of groups is packing once.
      std::vector<uint8_t> sliced(packed.size(), 0x5a);
      for (int64_t g = 0; g < groups; g += 2)
        cpu::pack_q4_0_groups(src.data(), stride, n_rows, n_cols, sliced.data(), g,
                              std::min<int64_t>(2, groups - g));
      EXPECT_EQ(sliced, packed);
    }
  }
}

// Against the naive double reference on every level: row counts around the group of 16 (padding rows
// never written), every tile width and its remainder, lengths from one block to 8192 values.
TEST(MatmulPacked, MatchesTheReferenceForRowCountsAndLengths) {
  for (int64_t n_out : {1, 15, 16, 17, 37, 64})
    for (int64_t n_tokens : {1, 4, 5, 8, 9, 13})
      check_matmul({DType::Q4_0, 96, n_out, n_tokens, n_tokens % 2 == 1, false, 1.0f, true});
  for (int64_t n_in : {32, 64, 512, 4864})
    check_matmul({DType::Q4_0, n_in, 33, 6, true, false, 1.0f, true}, 1e-4);
  check_matmul({DType::Q4_0, 8192, 19, 3, false, false, 1.0f, true}, 1e-4);
}

TEST(MatmulPacked, LargeTinyAndSubnormalScales) {
  // Activations near f32's range edges; weights whose f16 block scales are subnormal.
  for (float scale : {1e30f, 1e-38f}) check_matmul({DType::Q4_0, 256, 21, 3, false, false, scale, true});
  check_matmul({DType::Q4_0, 256, 21, 3, true, false, 1.0f, true, 1e-6f});
}

TEST(MatmulPacked, ExtremeNibblesAndActivations) {
  // Nibbles 0 and 15 against activations of +-127: the largest integer sums (the AVX2 kernel adds them
  // in 16 bits), with and without exact mode.
  for (int64_t n_tokens : {1, 7})
    for (bool exact : {false, true})
      check_matmul({DType::Q4_0, 1024, 35, n_tokens, false, exact, 3.0f, true, 1.0f, true}, 1e-4);
}

TEST(MatmulPacked, ExactModeReadsThePackedRows) {
  for (int64_t n_tokens : {1, 6})
    check_matmul({DType::Q4_0, 512, 29, n_tokens, true, /*exact=*/true, 1.0f, true});
}

// The packed kernels' arithmetic is the unpacked scalar kernel's (per block: exact integer dot, then
// acc += dot * (dw * dx)): the scalar levels agree bit for bit, and so do the vector levels with each other
// (both accumulate with one fma per block). Exact mode gives the same bits packed or not.
TEST(MatmulPacked, AgreesBitForBitWithTheUnpackedScalarKernelAndAcrossVectorLevels) {
  std::mt19937 rng(22);
  for (bool exact : {false, true}) {
    MatmulCase c{DType::Q4_0, 768, 45, 7, true, exact, 1.0f, true};
    const MatmulFixture f(c, rng);
    MatmulCase plain = c;
    plain.packed = false;
    ThreadPool pool(2);
    std::vector<std::vector<float>> vector_levels;
    for (cpu::Isa isa : cpu::runnable_isas()) {
      cpu::ScopedIsa scoped(isa);
      SCOPED_TRACE(fmt::format("{} exact={}", cpu::isa_name(isa), exact));
      std::vector<float> y_packed, y_plain;
      cpu::matmul(f.params(c, y_packed), pool);
      cpu::matmul(f.params(plain, y_plain), pool);
      if (isa == cpu::Isa::Scalar || exact)
        expect_bits_equal(y_packed, y_plain, "packed vs unpacked");
      else
        vector_levels.push_back(y_packed);
    }
    for (size_t k = 1; k < vector_levels.size(); ++k)
      expect_bits_equal(vector_levels[k], vector_levels[0], "vector levels");
  }
}

TEST(MatmulPacked, RejectsPackedWeightsOfOtherTypes) {
  ThreadPool pool(1);
  std::mt19937 rng(23);
  const MatmulCase c{DType::Q8_0, 64, 4, 2, false};
  const MatmulFixture f(c, rng);
  std::vector<float> y;
  auto p = f.params(c, y);
  p.w_packed = f.w_storage.data();
  EXPECT_THROW(cpu::matmul(p, pool), Error);
}

}  // namespace
}  // namespace ariadne
