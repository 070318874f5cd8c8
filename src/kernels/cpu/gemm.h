// Inner kernels of matmul (matmul.h), one set per instruction-set level (isa.h). Internal to kernels/cpu:
// plain declarations only, so the per-level files can include it (see the rule in isa.h).
//
// A kernel computes one tile of at most kMaxRows weight rows x kMaxCols tokens. Every output of a tile is
// accumulated with its own registers, in an order fixed by the row length alone, so an output never depends
// on the tile shape it was computed in: a token decoded alone equals the same token inside a prefill batch,
// bit for bit, and threads only decide which tiles they take.
//
// Two kinds of activations:
//  - f32 rows, for F32/F16/BF16 weights, and for every type in exact mode (quantized rows are then
//    dequantized to f32 first, see matmul.cpp);
//  - Q8 blocks (below), for Q8_0/Q4_0/Q4_K/Q6_K weights: integer dot products per 32 values, the way
//    llama.cpp wins its speed; the activations are rounded to 8 bits per 32-value block.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ariadne::cpu::gemm {

constexpr int kMaxRows = 4;
constexpr int kMaxCols = 4;

// Float weights (the f32, f16 and bf16 kernels below) take tiles of up to kMaxFloatRows x kMaxFloatCols:
// with no integer products to share, the register tile alone amortises each weight's load and conversion
// and each token's load. A level may compute such a tile as several smaller ones (same results).
constexpr int kMaxFloatRows = 6;
constexpr int kMaxFloatCols = 4;

// 32 activations quantized symmetrically: x[i] ~ d * q[i], q in [-127, 127] (d = max|x| / 127, q rounded
// to nearest, ties to even). sum[0] / sum[1]: sums of q over the first / second 16 values (the K-quants
// need them per 16 or 32 values to apply their offsets). A block whose d is below kMinScale (the smallest
// normal float, so max|x| < 1.5e-36) gets q = 0: 1/d would overflow.
constexpr float kMinScale = 1.17549435e-38f;  // FLT_MIN

struct Q8Block {
  float d;
  int16_t sum[2];
  int8_t q[32];
};
static_assert(sizeof(Q8Block) == 40, "Q8Block must stay packed");

// Two consecutive Q8Blocks of one token as the AVX-512 Q8_0 decode kernel reads them (matmul.cpp builds
// them once per call): the quants of blocks 2i and 2i+1; the start of each block's integer dot product,
// -128 x the block's sum (the Q8_0 kernels read a weight as the unsigned w + 128), in lanes 0 and 8; each
// block's scale in the 8 lanes of its half. A missing last block is zeros.
struct Q8Pair {
  int8_t q[64];
  int32_t start[16];
  float d[16];
};
static_assert(sizeof(Q8Pair) == 192, "Q8Pair must stay packed");

struct Tile {
  const uint8_t* w;  // first weight row (packed type, may be unaligned)
  size_t w_stride;   // bytes between weight rows
  int rows;          // 1..kMaxRows (float weights: 1..kMaxFloatRows)
  const void* x;     // first token: f32 [n], Q8Block [n/32] or Q8Pair [ceil(n/64)]
  size_t x_stride;   // bytes between tokens
  int cols;          // 1..kMaxCols (float weights: 1..kMaxFloatCols)
  int64_t n;         // row length in values (a multiple of the weight type's block)
  float* y;          // y[c * y_stride + r] receives the dot product of row r and token c
  int64_t y_stride;
};

using TileFn = void (*)(const Tile&);

// Q4_0 weights packed 16 rows at a time (cpu::pack_q4_0, packed.h; layout described there): the 16 lanes
// of a 512-bit register hold the same 4 bytes of 16 rows, so one unsigned x signed dot-product instruction
// with a token's 4 bytes broadcast advances 16 outputs. A tile is one group of 16 rows x at most
// kMaxPackedCols tokens; each output is accumulated in block order, as Tile's are.
constexpr int kPackRows = 16;
constexpr int kMaxPackedCols = 8;

// A Q8Block as the packed kernels read it: the sums folded into the integer the nibbles' offset needs,
// offset = -8 * (sum[0] + sum[1]), so a kernel loads it as the start of the dot product.
struct Q8OffsetBlock {
  float d;
  int32_t offset;
  int8_t q[32];
};
static_assert(sizeof(Q8OffsetBlock) == 40, "Q8OffsetBlock must stay packed");

struct PackedTile {
  const uint8_t* w;  // the group: [n/32][256] nibble bytes, then [n/32][16] f16 scales (64-byte aligned)
  int rows;          // rows written, 1..kPackRows (the group's others are padding)
  const Q8OffsetBlock* x;  // first token, [n/32] blocks
  size_t x_stride;         // bytes between tokens
  int cols;                // 1..kMaxPackedCols
  int64_t n;               // row length in values, a multiple of 32
  float* y;                // y[c * y_stride + r] receives the dot product of the group's row r and token c
  int64_t y_stride;
};

using PackedTileFn = void (*)(const PackedTile&);

// The kernels of one level. A null entry means "not vectorised at this level": matmul.cpp then uses the
// scalar one (same results up to rounding).
struct Kernels {
  TileFn f32;   // w f32, x f32
  TileFn f16;   // w f16, x f32
  TileFn bf16;  // w bf16, x f32
  TileFn q8_0;  // w Q8_0, x Q8Block
  TileFn q4_0;
  TileFn q4_k;
  TileFn q6_k;
  void (*quantize_q8)(const float* x, Q8Block* out, int64_t n);  // n a multiple of 32
  PackedTileFn q4_0_packed;                                      // w packed Q4_0 (above), x Q8OffsetBlock
  TileFn q8_0_pairs;  // w Q8_0, x Q8Pair, one token (cols = 1); null: q8_0 with Q8Blocks
};

const Kernels& scalar_kernels();
const Kernels& avx2_kernels();    // only linked on x86-64 (ARIADNE_HAVE_X86_KERNELS)
const Kernels& avx512_kernels();  // idem

}  // namespace ariadne::cpu::gemm
