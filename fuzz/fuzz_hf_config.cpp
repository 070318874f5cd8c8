// libFuzzer target: config.json parsing (parse_hf_config) over arbitrary text. Any input must either give
// a config whose sizes are consistent or throw ariadne::Error (never an nlohmann exception).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "formats/hf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const ariadne::ModelConfig c = ariadne::parse_hf_config(text, "fuzz/config.json");
    const bool consistent = c.n_vocab > 0 && c.n_embd > 0 && c.n_layer > 0 && c.n_head > 0 &&
                            c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0 && c.head_dim > 0 &&
                            c.head_dim % 2 == 0 && c.n_ff > 0 && c.n_ctx_train > 0 && c.rms_eps > 0.0f &&
                            c.rope.theta > 0.0f;
    if (!consistent) std::abort();
  } catch (const ariadne::Error&) {
  }
  return 0;
}
