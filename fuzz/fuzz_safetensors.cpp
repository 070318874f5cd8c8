// libFuzzer target: safetensors header and tensor-table parsing over an arbitrary buffer. Any input must
// either parse into tensors that lie inside the buffer or throw ariadne::Error.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto tensors = ariadne::parse_safetensors(data, size, "fuzz.safetensors");
    for (const auto& t : tensors) {
      if (t.offset > size || t.nbytes > size - t.offset || t.data != data + t.offset) std::abort();
      // Touch the first and last byte so ASan sees any out-of-bounds view.
      if (t.nbytes > 0) {
        volatile uint8_t sink = t.data[0];
        sink = t.data[t.nbytes - 1];
        (void)sink;
      }
    }
  } catch (const ariadne::Error&) {
  }
  return 0;
}
