// Reader (and a minimal writer) for the safetensors format used by Hugging Face checkpoints.
//
// File layout:
//   [0, 8)            uint64 little-endian N: length of the JSON header
//   [8, 8 + N)        JSON object: { "<tensor name>": {"dtype": "F32", "shape": [..], "data_offsets": [b,
//   e]},
//                                    "__metadata__": {string: string} (optional, ignored) }
//   [8 + N, end)      data area; each tensor's bytes are [b, e) relative to its start, row-major.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"

namespace ariadne {

// The header is parsed into memory; a larger one is treated as corrupt rather than trusted.
constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull * 1024 * 1024;

struct SafetensorsTensor {
  std::string name;
  DType type = DType::F32;
  std::vector<int64_t> shape;     // row-major, outermost first; [] is a scalar
  uint64_t offset = 0;            // absolute byte offset of the data from the start of the buffer/file
  uint64_t nbytes = 0;            // == numel * element size (checked)
  const uint8_t* data = nullptr;  // base + offset; inside the buffer given to parse_safetensors
};

// Parses the header of a safetensors image held in [data, data + size) and checks every tensor's dtype,
// shape and byte range against the buffer. Only F32, F16 and BF16 are accepted. Throws Error naming
// path_for_errors, the tensor and the field on any inconsistency. Tensors come back sorted by offset.
std::vector<SafetensorsTensor> parse_safetensors(const uint8_t* data, size_t size,
                                                 const std::string& path_for_errors);

// A memory-mapped safetensors file and its parsed tensors (whose data point into the mapping).
struct SafetensorsFile {
  std::shared_ptr<MappedFile> file;
  std::vector<SafetensorsTensor> tensors;

  const SafetensorsTensor* find(std::string_view name) const;
};

SafetensorsFile open_safetensors(const std::string& path);

// ---- Writer (tests and tools: build small, or deliberately corrupt, files) ----

struct SafetensorsWriteTensor {
  std::string name;
  std::string dtype;           // written verbatim, so a test may write an unsupported "I64"
  std::vector<int64_t> shape;  // written verbatim, not checked against bytes
  std::vector<uint8_t> bytes;
};

// Lays the tensors out back to back in the given order and returns the whole file image.
// The header is padded with spaces to a multiple of 8 bytes so the data area stays 8-byte aligned.
std::vector<uint8_t> write_safetensors(const std::vector<SafetensorsWriteTensor>& tensors);

// Builds a file image from a raw header text and a data area (for hand-made corrupt headers).
std::vector<uint8_t> pack_safetensors(const std::string& header_json, const std::vector<uint8_t>& data_area);

// Writes bytes to path; throws Error naming the path on failure.
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace ariadne
