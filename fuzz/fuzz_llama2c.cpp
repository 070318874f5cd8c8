// libFuzzer target: llama2.c legacy checkpoints. Any input must either be refused with ariadne::Error or
// give a model whose tensors lie inside the buffer and that runs: a checkpoint that parses is loaded into a
// session and evaluates two tokens (the smallest and the largest id), which must give one row of logits of
// the vocabulary's length per token. Odd but legal shapes (head size 2, one KV head, a vocabulary of one)
// must work or be refused, never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "formats/llama2c.h"
#include "runtime/session.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ariadne;
  // The loader views f32 weights in place, as from a page-aligned mapping: give it an aligned copy.
  std::vector<float> aligned((size + sizeof(float) - 1) / sizeof(float));
  if (size > 0) std::memcpy(aligned.data(), data, size);
  const auto* bytes = reinterpret_cast<const uint8_t*>(aligned.data());
  const bool plausible = looks_like_llama2c(bytes, size);
  try {
    std::shared_ptr<const ModelSource> src = parse_llama2c_model(bytes, size, "fuzz.bin");
    if (!plausible) std::abort();  // the sniffer and the loader must agree
    for (const auto& [name, t] : src->tensors)
      if (t.data < bytes || t.nbytes > size || t.data + t.nbytes > bytes + size) std::abort();
    SessionOptions options;
    options.n_ctx = 2;
    options.memory_limit = 64u << 20;
    Session session(src, options);
    const int32_t ids[2] = {0, static_cast<int32_t>(src->config.n_vocab - 1)};
    const std::vector<float> logits = session.eval(ids, /*all_logits=*/true);
    if (logits.size() != static_cast<size_t>(2 * src->config.n_vocab)) std::abort();
  } catch (const Error&) {
  }
  return 0;
}
