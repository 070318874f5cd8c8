// libFuzzer target: SentencePiece tokenizer.model parsing (vocab_from_sentencepiece_model_bytes) over
// arbitrary bytes. Any input must either give a usable vocabulary or throw ariadne::Error; a vocabulary
// that parses must tokenize and detokenize without crashing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "core/error.h"
#include "tokenizer/sentencepiece_model.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ariadne::Vocab v =
        ariadne::vocab_from_sentencepiece_model_bytes(std::span(data, size), "fuzz/tokenizer.model");
    const int32_t n = v.size();
    if (n <= 0 || v.scores.size() != v.tokens.size() || v.types.size() != v.tokens.size()) std::abort();
    for (int32_t id : {v.unk_id, v.bos_id, v.eos_id, v.pad_id})
      if (id < -1 || id >= n) std::abort();
    const auto tok = ariadne::Tokenizer::create(std::move(v));
    const std::vector<int32_t> ids = tok->encode("Hello <s> w\xc3\xb6rld \xf0\x9f\x99\x82 a\x80", true, true);
    for (int32_t id : ids)
      if (id < 0 || id >= n) std::abort();
    tok->decode(ids, true);
    tok->decode(ids, false);
  } catch (const ariadne::Error&) {
  }
  return 0;
}
