// libFuzzer target: tokenizer.json parsing (vocab_from_tokenizer_json_text) over arbitrary bytes. Any input
// must give a consistent vocabulary or throw ariadne::Error; a byte-level result must also build a tokenizer
// that encodes and decodes a short text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "tokenizer/hf_vocab.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const ariadne::Vocab v = ariadne::vocab_from_tokenizer_json_text(text, "fuzz/tokenizer.json");
    const size_t n = v.tokens.size();
    if (n == 0 || v.types.size() != n || (!v.scores.empty() && v.scores.size() != n)) std::abort();
    for (int32_t id : {v.bos_id, v.eos_id, v.eot_id, v.unk_id})
      if (id < -1 || id >= v.size()) std::abort();
    if (v.model == ariadne::TokenizerModel::Bpe && n <= 100000) {
      auto tok = ariadne::Tokenizer::create(v);
      const std::vector<int32_t> ids = tok->encode("Hello, world! 123 caf\xc3\xa9\n\n  x", true, true);
      for (int32_t id : ids)
        if (id < 0 || id >= v.size()) std::abort();
      (void)tok->decode(ids, true);
    }
  } catch (const ariadne::Error&) {
  }
  return 0;
}
