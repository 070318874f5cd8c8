// libFuzzer target for the GGUF reader and the GGUF -> ModelSource mapping. Any input must either parse
// or throw ariadne::Error; crashes, hangs, sanitizer reports and other exceptions are bugs.
//
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang \
//         -DARIADNE_FUZZ=ON -DARIADNE_BUILD_TESTS=OFF && cmake --build build-fuzz --target fuzz_gguf
//   build-fuzz/bin/fuzz_gguf -max_total_time=60 CORPUS_DIR
// Seed the corpus with small valid files (e.g. those the GgufRoundTrip tests write).
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ariadne;
  try {
    auto file = std::make_shared<GgufFile>(data, size, "<fuzz>");
    // Touch everything a user-facing command would: every value rendered, every tensor byte read.
    size_t sink = 0;
    for (const GgufKeyValue& kv : file->metadata()) sink += gguf_value_to_string(kv.value).size();
    for (const TensorView& t : file->tensors())
      for (size_t i = 0; i < t.nbytes; i += 4096) sink += t.data[i];
    if (file->has("general.architecture")) {
      auto src = load_gguf_model(file);
      sink += src->tensors.size() + src->config.rope.freq_factors.size();
    }
    volatile size_t keep = sink;
    (void)keep;
  } catch (const Error&) {
    // Malformed input is expected to be rejected this way.
  }
  return 0;
}
