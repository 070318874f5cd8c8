// A tensor viewed in place: weights live in memory-mapped files or buffers owned by whoever loaded them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace ariadne {

// A tensor viewed in place. data points into storage owned by
// the loader (ModelSource) that produced it.
struct TensorView {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;  // row-major, outermost first
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  // Q4_0 matrices of a loaded model: the same values repacked for the CPU matmul kernels
  // (kernels/cpu/packed.h), owned by the loader like data; null when there is none. Ops read it instead of
  // data, whose pages the loader may have dropped from memory (they are read back from the file on use).
  const uint8_t* packed = nullptr;

  int64_t numel() const;
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }  // innermost (contiguous) dimension
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
};

}  // namespace ariadne
