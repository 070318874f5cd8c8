// libFuzzer target: Chelsea outlier sidecars (GGUF, runtime/chelsea_sidecar.h). Any input must either be
// refused with ariadne::Error or give a table consistent with what the reader promises: outliers ascending
// head ids below n_layer x n_head_kv, one error per head when errors are present, a positive budget.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "core/error.h"
#include "formats/gguf.h"
#include "runtime/chelsea_sidecar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ariadne;
  try {
    const GgufFile f(data, size, "fuzz.chelsea.gguf");
    const ChelseaSidecar s = read_chelsea_sidecar(f);
    const int64_t n_heads = s.n_layer * s.n_head_kv;
    if (s.n_layer <= 0 || s.n_head_kv <= 0 || !(s.calib_ratio > 0)) std::abort();
    for (size_t i = 0; i < s.outliers.size(); ++i)
      if (s.outliers[i] < 0 || s.outliers[i] >= n_heads || (i > 0 && s.outliers[i] <= s.outliers[i - 1]))
        std::abort();
    if (!s.head_errors.empty() && static_cast<int64_t>(s.head_errors.size()) != n_heads) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
