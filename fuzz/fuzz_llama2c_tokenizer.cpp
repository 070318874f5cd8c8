// libFuzzer target: llama2.c tokenizer.bin files. The first input byte picks the expected vocabulary size
// (0: read to the end of the file), the rest is the file. Any input must either be refused with
// ariadne::Error or give a vocabulary that a tokenizer accepts: it then encodes a fixed text and decodes
// every id it gave.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/llama2c_vocab.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ariadne;
  if (size == 0) return 0;
  const int32_t n_vocab = data[0];
  try {
    Vocab v = vocab_from_llama2c(std::span<const uint8_t>(data + 1, size - 1), "fuzz/tokenizer.bin", n_vocab);
    if (v.tokens.size() < 3 || v.scores.size() != v.tokens.size() || v.types.size() != v.tokens.size())
      std::abort();
    if (n_vocab > 0 && v.tokens.size() != static_cast<size_t>(n_vocab)) std::abort();
    auto tok = Tokenizer::create(std::move(v));
    const std::string text = "Once upon a time, <s> 12 caf\xc3\xa9 \xe2\x82\xac\n";
    const auto n = static_cast<int32_t>(tok->vocab().tokens.size());
    const std::vector<int32_t> ids = tok->encode(text, /*add_special=*/true, /*parse_special=*/true);
    for (const int32_t id : ids)
      if (id < 0 || id >= n) std::abort();
    volatile size_t sink = tok->decode(ids, /*special=*/true).size();
    (void)sink;
  } catch (const Error&) {
  }
  return 0;
}
