#include "core/dtype.h"

#include <array>
#include <cctype>
#include <string>

namespace ariadne {

namespace {
// ggml_type ids: F32=0, F16=1, Q4_0=2, Q8_0=8, Q4_K=12, Q6_K=14, I32=26, BF16=30.
constexpr std::array<DTypeTraits, 8> kTraits = {{
    {"f32", 1, 4, 0},
    {"f16", 1, 2, 1},
    {"bf16", 1, 2, 30},
    {"q8_0", kQK8_0, 2 + 32, 8},
    {"q4_0", kQK4_0, 2 + 16, 2},
    {"q4_k", kQK_K, 2 + 2 + 12 + 128, 12},
    {"q6_k", kQK_K, 128 + 64 + 16 + 2, 14},
    {"i32", 1, 4, 26},
}};
}  // namespace

const DTypeTraits& traits(DType t) {
  return kTraits[static_cast<size_t>(t)];
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (kTraits[i].ggml_type == ggml_type) return static_cast<DType>(i);
  return std::nullopt;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  std::string lower(name);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (kTraits[i].name == lower) return static_cast<DType>(i);
  return std::nullopt;
}

}  // namespace ariadne
