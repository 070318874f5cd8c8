// --cache-type: the KV cache element type of run and bench (llama.cpp's -ctk/-ctv, one type for K and V).
#pragma once

#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace ariadne::cli {

inline DType parse_cache_type(const std::string& name) {
  const auto t = dtype_from_name(name);
  if (!t || (*t != DType::F32 && *t != DType::F16 && *t != DType::BF16 && *t != DType::Q8_0))
    fail("--cache-type: unknown KV cache type '{}' (expected f32, f16, bf16 or q8_0)", name);
  return *t;
}

}  // namespace ariadne::cli
