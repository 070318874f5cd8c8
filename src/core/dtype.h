// Element types of weights and activations. Block layouts of the quantized types are bit-compatible with
// ggml (llama.cpp), so GGUF tensor data is used in place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ariadne {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  Q8_0,  // blocks of 32: f16 scale + 32 x int8
  Q4_0,  // blocks of 32: f16 scale + 16 bytes of 4-bit values (offset 8)
  Q4_K,  // super-blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
  Q6_K,  // super-blocks of 256: 128 bytes low nibbles, 64 bytes high bits, 16 int8 scales, f16 d
  I32,   // metadata-like tensors only (never a weight of a matmul)
};

struct DTypeTraits {
  std::string_view name;  // lower-case, as on the command line: "f32", "q4_k", ...
  int block_size;         // elements per block (1 for scalar types)
  size_t block_bytes;     // bytes per block
  uint32_t ggml_type;     // ggml_type enum value used in GGUF files
};

const DTypeTraits& traits(DType t);
inline std::string_view dtype_name(DType t) {
  return traits(t).name;
}
inline int block_size(DType t) {
  return traits(t).block_size;
}

// Bytes of a row of n elements; n must be a multiple of the block size (checked by the caller that reads
// the file, since a non-multiple means a corrupt or unsupported tensor).
inline size_t row_bytes(DType t, int64_t n) {
  const auto& tr = traits(t);
  return static_cast<size_t>(n / tr.block_size) * tr.block_bytes;
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
std::optional<DType> dtype_from_name(std::string_view name);  // "f32", "q8_0", ... (case-insensitive)

constexpr int kQK8_0 = 32;
constexpr int kQK4_0 = 32;
constexpr int kQK_K = 256;

}  // namespace ariadne
