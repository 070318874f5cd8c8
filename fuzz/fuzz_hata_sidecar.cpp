// libFuzzer target: HATA sidecars (GGUF, runtime/hata.h). Any input must either be refused with
// ariadne::Error or give weights consistent with what the reader promises: ascending hashed layers below
// n_layer, one [n_head_kv][head_dim][rbits] matrix per hashed layer, rbits a multiple of 64.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "formats/gguf.h"
#include "runtime/hata.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ariadne;
  try {
    const GgufFile f(data, size, "fuzz.hata.gguf");
    const HataWeights w = read_hata_sidecar(f);
    if (w.rbits <= 0 || w.rbits % 64 != 0 || w.n_head_kv <= 0 || w.n_head % w.n_head_kv != 0) std::abort();
    if (w.w.size() != w.layers.size()) std::abort();
    for (size_t i = 0; i < w.layers.size(); ++i) {
      if (w.layers[i] < 0 || w.layers[i] >= w.n_layer || (i > 0 && w.layers[i] <= w.layers[i - 1]))
        std::abort();
      if (static_cast<int64_t>(w.w[i].size()) != w.n_head_kv * w.head_dim * w.rbits) std::abort();
      if (w.layer(w.layers[i]) != w.w[i].data()) std::abort();
    }
  } catch (const Error&) {
  }
  return 0;
}
