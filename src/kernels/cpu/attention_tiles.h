// Internal to the CPU attention kernel: the tile primitives one instruction-set level implements
// (attention.cpp: portable scalar; attention_avx2.cpp; attention_avx512.cpp). attention.cpp does the tiling,
// the causal bookkeeping, the split-K merge and the dispatch; these functions do the arithmetic of one tile
// of query rows x kKeyTile keys.
//
// Plain declarations only: the per-level files include this header, so it must obey isa.h's include rule.
//
// Layouts: every f32 row in a tile buffer is padded with zeros to `ld` floats (a multiple of kPad), so the
// vector loops have no tail along head_dim. A zero pad adds exactly 0 to every dot product and every output
// element, so padding never changes a result.
//
// Bit-reproducibility contract (what makes decode == prefill and any thread count give the same bits): the
// value computed for a (query row, key) or (query row, output element) depends only on that row's inputs
// and the tile's keys, never on how many rows are processed together or which other rows are in the call.
// Each implementation blocks rows and keys for speed but gives every element the same operation sequence.
#pragma once

#include <cstdint>

namespace ariadne::cpu::attention_tiles {

constexpr int64_t kKeyTile = 64;  // keys per tile; score rows have this stride
constexpr int64_t kPad = 16;      // f32 rows are padded to a multiple of this many floats

enum class RowType : int32_t { F32, F16, BF16, Q8_0 };  // element types of K/V rows (see quants.h)

struct SoftmaxArgs {
  float* s;           // [n_rows][kKeyTile] in: raw dot products; out: p = exp(logit - m_new), 0 if masked
  int64_t n_rows;     //
  int64_t n_keys;     // valid keys of the tile (<= kKeyTile); columns beyond are ignored
  float scale;        // logit = dot * scale + bias[j]
  const float* bias;  // [kKeyTile] (first n_keys used) or null
  // Causal mask: key j is hidden from row r when key_pos[j] > row_limit[r]. key_pos = null: nothing hidden.
  const int32_t* key_pos;    // [kKeyTile] (first n_keys used) or null
  const int32_t* row_limit;  // [n_rows]
  float* m;                  // [n_rows] running max logit (-inf: nothing seen yet), updated
  float* l;                  // [n_rows] running sum of exp(logit - m), updated
  float* alpha;              // [n_rows] out: factor the running output must be scaled by
  uint8_t* active;           // [n_rows] out: 0 when no key of the tile is visible to the row (row untouched)
  // Optional, [n_rows] out (null: not wanted): the row's largest logit in the tile (-inf when inactive) and
  // the lowest key j whose logit equals it, logits as formed above.
  float* tile_max = nullptr;
  int32_t* tile_argmax = nullptr;
};

struct AccumulateArgs {
  const float* p;         // [n_rows][kKeyTile] softmax weights from softmax()
  int64_t n_rows;         //
  int64_t n_keys;         //
  const float* v;         // [n_keys][ld] value rows
  int64_t ld;             //
  const float* alpha;     // [n_rows]
  const uint8_t* active;  // [n_rows] rows with 0 are skipped
  float* acc;             // [n_rows][ld] running output: acc = acc * alpha + sum_j p[j] * v[j]
};

struct TileKernels {
  // dst: [n][ld]; row i is rows[i] (d elements of `type`, q8_0: d a multiple of 32) converted exactly as
  // dequantize_row does, followed by zeros up to ld.
  void (*convert)(RowType type, const uint8_t* const* rows, int64_t n, int64_t d, int64_t ld, float* dst);
  // s[r * kKeyTile + j] = dot(q[r], k[j]) over ld elements; q: [n_rows][ld], k: [n_keys][ld]. Columns
  // n_keys..kKeyTile-1 of the n_rows score rows may be overwritten with anything.
  void (*dots)(const float* q, int64_t n_rows, const float* k, int64_t n_keys, int64_t ld, float* s);
  // Logits (scale, bias, causal mask), then one online-softmax step per row:
  //   m_new = max(m, max_j logit_j); alpha = exp(m - m_new); p_j = exp(logit_j - m_new);
  //   l = l * alpha + sum_j p_j; m = m_new.
  // A row that sees no key of the tile (all logits -inf) is left as it was and marked inactive.
  void (*softmax)(const SoftmaxArgs& a);
  void (*accumulate)(const AccumulateArgs& a);
};

extern const TileKernels kAvx2Tiles;    // attention_avx2.cpp (x86-64 builds only)
extern const TileKernels kAvx512Tiles;  // attention_avx512.cpp (x86-64 builds only)

}  // namespace ariadne::cpu::attention_tiles
