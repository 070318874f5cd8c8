#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "kernels/cpu/packed.h"
#include "kernels/cpu/quants.h"

namespace ariadne::cpu {

namespace {

// Rows of one panel are swept by every token group before the next panel: the panel's weights (about
// kPanelBytes) stay in L2 while the activations stream past.
constexpr size_t kPanelBytes = 192 * 1024;

// Float weights (F32, F16, BF16) meeting a single token: rows per tile, and bytes per chunk a thread takes
// (four panels, a longer sequential stream between jumps). Measured with F16 on the 2-core VM: 4 or 6 rows
// per tile read no faster than 1 with the kernels' prefetch (gemm_avx512.cpp); 768 KiB chunks decode about
// 3% faster than 192 KiB ones.
constexpr int kFloatDecodeRows = 1;
constexpr size_t kFloatDecodeChunkBytes = 4 * kPanelBytes;

const uint8_t* row_ptr(const void* base, size_t stride, int64_t row) {
  return static_cast<const uint8_t*>(base) + static_cast<size_t>(row) * stride;
}

const gemm::Kernels& level_kernels(Isa isa) {
#if defined(ARIADNE_HAVE_X86_KERNELS)
  if (isa == Isa::Avx512) return gemm::avx512_kernels();
  if (isa == Isa::Avx2) return gemm::avx2_kernels();
#endif
  (void)isa;
  return gemm::scalar_kernels();
}

gemm::TileFn tile_fn(const gemm::Kernels& k, DType t) {
  switch (t) {
    case DType::F32:
      return k.f32;
    case DType::F16:
      return k.f16;
    case DType::BF16:
      return k.bf16;
    case DType::Q8_0:
      return k.q8_0;
    case DType::Q4_0:
      return k.q4_0;
    case DType::Q4_K:
      return k.q4_k;
    case DType::Q6_K:
      return k.q6_k;
    default:
      return nullptr;
  }
}

// The kernel of the active level, or the scalar one where the level has none.
gemm::TileFn pick(DType t) {
  gemm::TileFn fn = tile_fn(level_kernels(active_isa()), t);
  return fn != nullptr ? fn : tile_fn(gemm::scalar_kernels(), t);
}

bool is_integer_type(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K;
}

// One chunk of weight rows (starting at output row first_row) times every token of x, into y: tiles of
// max_cols tokens x tile height rows, then the bias.
struct Sweep {
  gemm::TileFn fn;
  const void* x;
  size_t x_stride;
  int64_t n_tokens, n_in;
  float* y;
  int64_t y_stride;
  const float* bias;
  // Tile shape: max_rows x max_cols, or decode_rows x 1 for a single token (float weights: float_tiles()).
  int max_rows = gemm::kMaxRows, max_cols = gemm::kMaxCols, decode_rows = 1;

  // Float weights' larger tiles (gemm.h).
  void float_tiles() {
    max_rows = gemm::kMaxFloatRows;
    max_cols = gemm::kMaxFloatCols;
    decode_rows = kFloatDecodeRows;
  }

  void panel(const uint8_t* w, size_t w_stride, int64_t first_row, int64_t rows) const {
    // One token reads each weight once: single rows keep that a single sequential stream, which the
    // prefetchers follow best. Several tokens reuse each loaded row across the tile's columns.
    const int64_t tile_rows = n_tokens == 1 ? decode_rows : max_rows;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += max_cols) {
      const int cols = static_cast<int>(std::min<int64_t>(max_cols, n_tokens - t0));
      for (int64_t r0 = 0; r0 < rows; r0 += tile_rows) {
        gemm::Tile tile;
        tile.w = w + static_cast<size_t>(r0) * w_stride;
        tile.w_stride = w_stride;
        tile.rows = static_cast<int>(std::min<int64_t>(tile_rows, rows - r0));
        tile.x = static_cast<const uint8_t*>(x) + static_cast<size_t>(t0) * x_stride;
        tile.x_stride = x_stride;
        tile.cols = cols;
        tile.n = n_in;
        tile.y = y + t0 * y_stride + first_row + r0;
        tile.y_stride = y_stride;
        fn(tile);
      }
    }
    if (bias == nullptr) return;
    for (int64_t t = 0; t < n_tokens; ++t)
      for (int64_t r = 0; r < rows; ++r) y[t * y_stride + first_row + r] += bias[first_row + r];
  }
};

// Rows per chunk handed to a thread. Prefill: a panel of about kPanelBytes (rows stay in L2 while every
// token passes). Decode: at most decode_bytes, small enough that each thread gets several chunks (the faster
// thread takes more), large enough that taking one costs nothing next to reading it. A multiple of the tile
// height.
int64_t chunk_rows(size_t row_size, int64_t n_rows, int64_t n_tokens, int n_threads,
                   int64_t tile_rows = gemm::kMaxRows, size_t decode_bytes = kPanelBytes) {
  const size_t bytes = n_tokens == 1 ? decode_bytes : kPanelBytes;
  int64_t rows = static_cast<int64_t>(bytes / std::max<size_t>(row_size, 1));
  if (n_tokens == 1) rows = std::min(rows, std::max<int64_t>(16, n_rows / (8 * std::max(1, n_threads))));
  return std::max<int64_t>(tile_rows, rows / tile_rows * tile_rows);
}

// One token's Q8 blocks as the pairs the Q8_0 decode kernel reads (gemm.h Q8Pair).
std::vector<gemm::Q8Pair> pair_blocks(const gemm::Q8Block* blocks, int64_t n_blocks) {
  std::vector<gemm::Q8Pair> pairs(static_cast<size_t>((n_blocks + 1) / 2));  // zeros: a missing last block
  for (int64_t i = 0; i < n_blocks; ++i) {
    const gemm::Q8Block& b = blocks[i];
    gemm::Q8Pair& p = pairs[static_cast<size_t>(i / 2)];
    const int64_t half = i % 2;
    std::memcpy(p.q + 32 * half, b.q, sizeof(b.q));
    p.start[8 * half] = -128 * (b.sum[0] + b.sum[1]);
    std::fill(p.d + 8 * half, p.d + 8 * half + 8, b.d);
  }
  return pairs;
}

// Every token's activations rounded to Q8 blocks, [n_tokens][n_in / 32].
std::vector<gemm::Q8Block> quantize_tokens(const MatmulParams& p, ThreadPool& pool) {
  const int64_t blocks = p.n_in / 32;
  std::vector<gemm::Q8Block> xq(static_cast<size_t>(p.n_tokens * blocks));
  const gemm::Kernels& level = level_kernels(active_isa());
  pool.parallel_for(p.n_tokens, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      level.quantize_q8(p.x + t * p.x_stride, xq.data() + t * blocks, p.n_in);
  });
  return xq;
}

// Packed Q4_0 (packed.h): the same sweep over panels as Sweep, in groups of 16 rows; a thread takes whole
// groups, so an output's tile and arithmetic never depend on the thread count or the token count.
void matmul_packed_q4_0(const MatmulParams& p, ThreadPool& pool) {
  const int64_t n_in = p.n_in;
  const size_t group_bytes = q4_0_group_bytes(n_in);
  const int64_t n_groups = (p.n_out + kQ4_0PackRows - 1) / kQ4_0PackRows;
  const auto* packed = static_cast<const uint8_t*>(p.w_packed);
  auto first_row = [](int64_t group) { return group * kQ4_0PackRows; };

  if (p.exact) {
    // Rows unpacked to Q4_0, dequantized to f32 scratch, then f32 tiles: the unpacked path's arithmetic.
    const size_t x_stride_bytes = static_cast<size_t>(p.x_stride) * sizeof(float);
    Sweep sweep{pick(DType::F32), p.x, x_stride_bytes, p.n_tokens, n_in, p.y, p.y_stride, p.bias};
    const RowKernels& kernels = row_kernels(DType::Q4_0);
    const size_t f32_row = static_cast<size_t>(n_in) * sizeof(float);
    const int64_t rows = chunk_rows(f32_row, p.n_out, p.n_tokens, pool.size());
    const int64_t chunk = std::max<int64_t>(1, rows / kQ4_0PackRows);
    pool.parallel_chunks(n_groups, chunk, [&](int64_t begin, int64_t end) {
      const int64_t r0 = first_row(begin), r1 = std::min(first_row(end), p.n_out);
      std::vector<float> scratch(static_cast<size_t>((r1 - r0) * n_in));
      std::vector<uint8_t> row(row_bytes(DType::Q4_0, n_in));
      for (int64_t r = r0; r < r1; ++r) {
        unpack_q4_0_row(packed, n_in, r, row.data());
        kernels.dequantize(row.data(), scratch.data() + (r - r0) * n_in, n_in);
      }
      sweep.panel(reinterpret_cast<const uint8_t*>(scratch.data()), f32_row, r0, r1 - r0);
    });
    return;
  }

  // Every token's activations as Q8 blocks, their sums folded into the nibbles' offset (gemm.h).
  const int64_t blocks = n_in / 32;
  std::vector<gemm::Q8OffsetBlock> xq(static_cast<size_t>(p.n_tokens * blocks));
  const gemm::Kernels& level = level_kernels(active_isa());
  pool.parallel_for(p.n_tokens, [&](int64_t begin, int64_t end) {
    std::vector<gemm::Q8Block> row(static_cast<size_t>(blocks));
    for (int64_t t = begin; t < end; ++t) {
      level.quantize_q8(p.x + t * p.x_stride, row.data(), n_in);
      gemm::Q8OffsetBlock* out = xq.data() + t * blocks;
      for (int64_t b = 0; b < blocks; ++b) {
        out[b].d = row[b].d;
        out[b].offset = -8 * (row[b].sum[0] + row[b].sum[1]);
        std::memcpy(out[b].q, row[b].q, sizeof(out[b].q));
      }
    }
  });
  const size_t x_stride = static_cast<size_t>(blocks) * sizeof(gemm::Q8OffsetBlock);
  gemm::PackedTileFn fn = level_kernels(active_isa()).q4_0_packed;
  if (fn == nullptr) fn = gemm::scalar_kernels().q4_0_packed;
  // At most a panel of groups per chunk, and (prefill as decode) about 8 chunks per thread, so that small
  // matrices (a few panels) still keep every thread busy to the end.
  const int64_t panel = std::max<int64_t>(1, static_cast<int64_t>(kPanelBytes / group_bytes));
  const int64_t chunk = std::clamp<int64_t>(n_groups / (8 * std::max(1, pool.size())), 1, panel);
  pool.parallel_chunks(n_groups, chunk, [&](int64_t begin, int64_t end) {
    for (int64_t t0 = 0; t0 < p.n_tokens; t0 += gemm::kMaxPackedCols) {
      gemm::PackedTile tile;
      tile.x = xq.data() + t0 * blocks;
      tile.x_stride = x_stride;
      tile.cols = static_cast<int>(std::min<int64_t>(gemm::kMaxPackedCols, p.n_tokens - t0));
      tile.n = n_in;
      tile.y_stride = p.y_stride;
      for (int64_t g = begin; g < end; ++g) {
        tile.w = packed + static_cast<size_t>(g) * group_bytes;
        tile.rows = static_cast<int>(std::min<int64_t>(kQ4_0PackRows, p.n_out - first_row(g)));
        tile.y = p.y + t0 * p.y_stride + first_row(g);
        fn(tile);
      }
    }
    if (p.bias == nullptr) return;
    const int64_t r0 = first_row(begin), r1 = std::min(first_row(end), p.n_out);
    for (int64_t t = 0; t < p.n_tokens; ++t)
      for (int64_t r = r0; r < r1; ++r) p.y[t * p.y_stride + r] += p.bias[r];
  });
}

}  // namespace

void matmul(const MatmulParams& p, ThreadPool& pool) {
  ARIADNE_CHECK(is_weight_type(p.w_type),
                fmt::format("matmul: {} is not a weight type", dtype_name(p.w_type)));
  ARIADNE_CHECK(
      p.n_out >= 0 && p.n_in >= 0 && p.n_tokens >= 0,
      fmt::format("matmul: negative size (n_out {}, n_in {}, n_tokens {})", p.n_out, p.n_in, p.n_tokens));
  ARIADNE_CHECK(p.n_in % block_size(p.w_type) == 0,
                fmt::format("matmul: n_in {} is not a multiple of the {} block size {}", p.n_in,
                            dtype_name(p.w_type), block_size(p.w_type)));
  ARIADNE_CHECK(
      p.w_packed == nullptr || p.w_type == DType::Q4_0,
      fmt::format("matmul: packed weights given for {} (only q4_0 is packed)", dtype_name(p.w_type)));
  if (p.n_out == 0 || p.n_tokens == 0) return;
  ARIADNE_CHECK(p.x != nullptr && p.y != nullptr, "matmul: null x or y");
  ARIADNE_CHECK(p.n_tokens == 1 || (p.x_stride >= p.n_in && p.y_stride >= p.n_out),
                fmt::format("matmul: x_stride {} < n_in {} or y_stride {} < n_out {}", p.x_stride, p.n_in,
                            p.y_stride, p.n_out));
  if (p.w_packed != nullptr) {
    matmul_packed_q4_0(p, pool);
    return;
  }
  ARIADNE_CHECK(p.w != nullptr, "matmul: null w");
  ARIADNE_CHECK(
      p.w_row_stride >= row_bytes(p.w_type, p.n_in),
      fmt::format("matmul: w_row_stride {} < row size {}", p.w_row_stride, row_bytes(p.w_type, p.n_in)));

  const int64_t n_in = p.n_in;
  const size_t x_stride_bytes = static_cast<size_t>(p.x_stride) * sizeof(float);
  Sweep sweep{nullptr, p.x, x_stride_bytes, p.n_tokens, n_in, p.y, p.y_stride, p.bias};

  if (is_integer_type(p.w_type) && !p.exact) {
    // Quantize every token's activations once, then integer tiles.
    const std::vector<gemm::Q8Block> xq = quantize_tokens(p, pool);
    sweep.fn = pick(p.w_type);
    sweep.x = xq.data();
    sweep.x_stride = static_cast<size_t>(n_in / 32) * sizeof(gemm::Q8Block);
    // One token and Q8_0 weights: the level's pair kernel, if it has one, reads the token as Q8Pairs.
    std::vector<gemm::Q8Pair> pairs;
    const gemm::TileFn pair_fn = level_kernels(active_isa()).q8_0_pairs;
    if (p.n_tokens == 1 && p.w_type == DType::Q8_0 && pair_fn != nullptr) {
      pairs = pair_blocks(xq.data(), n_in / 32);
      sweep.fn = pair_fn;
      sweep.x = pairs.data();
      sweep.x_stride = pairs.size() * sizeof(gemm::Q8Pair);
    }
    const int64_t panel = chunk_rows(row_bytes(p.w_type, n_in), p.n_out, p.n_tokens, pool.size());
    pool.parallel_chunks(p.n_out, panel, [&](int64_t begin, int64_t end) {
      sweep.panel(row_ptr(p.w, p.w_row_stride, begin), p.w_row_stride, begin, end - begin);
    });
    return;
  }

  if (!is_integer_type(p.w_type)) {
    sweep.fn = pick(p.w_type);
    sweep.float_tiles();
    const int64_t panel =
        chunk_rows(row_bytes(p.w_type, n_in), p.n_out, p.n_tokens, pool.size(),
                   p.n_tokens == 1 ? sweep.decode_rows : sweep.max_rows, kFloatDecodeChunkBytes);
    pool.parallel_chunks(p.n_out, panel, [&](int64_t begin, int64_t end) {
      sweep.panel(row_ptr(p.w, p.w_row_stride, begin), p.w_row_stride, begin, end - begin);
    });
    return;
  }

  // Exact mode for quantized weights: each panel is dequantized to f32 scratch, then f32 tiles.
  sweep.fn = pick(DType::F32);
  const RowKernels& kernels = row_kernels(p.w_type);
  const size_t f32_row = static_cast<size_t>(n_in) * sizeof(float);
  const int64_t panel = chunk_rows(f32_row, p.n_out, p.n_tokens, pool.size());
  pool.parallel_chunks(p.n_out, panel, [&](int64_t begin, int64_t end) {
    const int64_t rows = end - begin;
    std::vector<float> scratch(static_cast<size_t>(rows * n_in));
    for (int64_t r = 0; r < rows; ++r)
      kernels.dequantize(row_ptr(p.w, p.w_row_stride, begin + r), scratch.data() + r * n_in, n_in);
    sweep.panel(reinterpret_cast<const uint8_t*>(scratch.data()), f32_row, begin, rows);
  });
}

void dequantize_rows(DType t, const void* src, size_t row_stride, int64_t n_rows, int64_t n_cols, float* dst,
                     ThreadPool& pool) {
  ARIADNE_CHECK(is_weight_type(t), fmt::format("dequantize_rows: {} is not a weight type", dtype_name(t)));
  ARIADNE_CHECK(n_rows >= 0 && n_cols >= 0 && n_cols % block_size(t) == 0,
                fmt::format("dequantize_rows: bad shape [{}, {}] for {}", n_rows, n_cols, dtype_name(t)));
  if (n_rows == 0 || n_cols == 0) return;
  ARIADNE_CHECK(src != nullptr && dst != nullptr, "dequantize_rows: null src or dst");
  ARIADNE_CHECK(
      row_stride >= row_bytes(t, n_cols),
      fmt::format("dequantize_rows: row_stride {} < row size {}", row_stride, row_bytes(t, n_cols)));
  const RowKernels& kernels = row_kernels(t);
  pool.parallel_for(n_rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      kernels.dequantize(row_ptr(src, row_stride, r), dst + r * n_cols, n_cols);
  });
}

}  // namespace ariadne::cpu
