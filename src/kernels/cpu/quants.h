// Row kernels for the weight types: quantize, dequantize and dot product of one row with an f32 vector.
//
// Block layouts are bit-compatible with ggml (so GGUF tensor data is used in place); all offsets are in
// bytes from the start of a block, multi-byte fields little-endian, blocks packed with no padding:
//   Q8_0 (34 B / 32 values):  [0] f16 d, [2] int8 q[32];                      x = q * d
//   Q4_0 (18 B / 32 values):  [0] f16 d, [2] u8 qs[16]; value j < 16 is the low nibble of qs[j], value
//                             j + 16 the high nibble;                          x = (nibble - 8) * d
//   Q4_K (144 B / 256 values): [0] f16 d, [2] f16 dmin, [4] u8 scales[12] (eight 6-bit scales and eight
//                             6-bit mins, packed as get_scale_min below), [16] u8 qs[128]; sub-block j
//                             (32 values) is the low (j even) or high (j odd) nibbles of qs[32*(j/2)..];
//                             x = (d * scale_j) * q - (dmin * min_j)
//   Q6_K (210 B / 256 values): [0] u8 ql[128] (low 4 bits), [128] u8 qh[64] (high 2 bits), [192] int8
//                             scales[16] (one per 16 values), [208] f16 d;   x = (d * scale_i/16) * (q - 32)
//
// Source pointers may be unaligned (they point into mmapped safetensors / GGUF data): every multi-byte
// field is read with memcpy. A little-endian host is assumed, as in ggml.
//
// dequantize_row performs the same float operations in the same order as ggml's dequantize_row_*, so
// the results are bit-identical to llama.cpp's. The Q8_0 / Q4_0 quantizers round exactly like ggml's
// reference quantizers, so a file we write is byte-identical to one llama.cpp writes; the K-quant
// quantizers are our own (a per-sub-block scale search), producing valid blocks of similar quality.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace ariadne::cpu {

// The scalar kernels of one type. A SIMD version replaces the entries of a type without touching the
// callers (matmul fetches the table once per call).
struct RowKernels {
  // dst: [n] floats; n a multiple of the block size.
  void (*dequantize)(const void* src, float* dst, int64_t n);
  // dst: row_bytes(t, n) bytes; n a multiple of the block size.
  void (*quantize)(const float* src, void* dst, int64_t n);
  // Returns dot(dequantize(row), x), bit-identical to dot_f32 of the dequantized row (see dot_f32).
  float (*dot)(const void* row, const float* x, int64_t n);
};

// Kernels of a weight type (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K); ARIADNE_CHECK fails for others.
const RowKernels& row_kernels(DType t);

// True for the types above (the ones a weight matrix may have).
bool is_weight_type(DType t);

// n must be a multiple of block_size(t) (checked).
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void quantize_row(DType t, const float* src, void* dst, int64_t n);
float dot_row(DType t, const void* row, const float* x, int64_t n);

// 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes of a Q4_K block: bytes 0-3 hold the
// low 6 bits of scales 0-3, bytes 4-7 those of mins 0-3; scales/mins 4-7 keep their low 4 bits in the
// nibbles of bytes 8-11 and their high 2 bits in the top bits of bytes 0-3 (scales) and 4-7 (mins).
void q4k_scale_min(int j, const uint8_t* scales, int& scale, int& min);

// The f32 dot product every kernel here reduces with: 16 interleaved partial sums (lane k takes the
// elements i with i % 16 == k, over the largest multiple of 16), summed pairwise, plus the sequential sum
// of the remaining n % 16 products. The order is fixed, so results never depend on threading, and
// dot_row(t, row, x, n) == dot_f32(dequantize_row(t, row), x, n) bit for bit: a token's matmul output
// does not depend on whether it was computed alone (decode) or in a batch (prefill).
float dot_f32(const float* a, const float* b, int64_t n);

}  // namespace ariadne::cpu
