// libFuzzer target: WordPiece encode + decode over arbitrary bytes, with a small vocabulary built here (no
// files needed). Checks: encoding never throws and gives ids inside the vocabulary; decoding any valid ids
// works; and when no word fell back to [UNK], decoding and re-encoding gives the same ids again (the
// vocabulary pieces are already normalised, so normalisation and the decode clean-up must not change the
// segmentation).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

std::unique_ptr<ariadne::Tokenizer> make_tokenizer() {
  using ariadne::TokenType;
  ariadne::Vocab v;
  v.model = ariadne::TokenizerModel::WordPiece;
  const std::string w = "\xE2\x96\x81";  // ▁: word start
  v.tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<ud>"};
  v.types.assign(v.tokens.size(), TokenType::Control);
  v.types[5] = TokenType::UserDefined;
  auto add = [&](std::string t) {
    v.tokens.push_back(std::move(t));
    v.types.push_back(TokenType::Normal);
  };
  for (char c = 'a'; c <= 'z'; ++c) {
    add(w + c);
    add(std::string(1, c));
  }
  for (char c = '0'; c <= '9'; ++c) add(w + c);
  for (const char* p : {",", ".", "'", "!", "?", "$", "(", ")", "-", "\xE4\xB8\xAD", "\xE6\x96\x87"})
    add(w + p);
  for (const char* s : {"the", "un", "unaff", "hello", "world", "\xCF\x83"}) add(w + s);
  for (const char* s : {"able", "ing", "aa", "ll", "\xCF\x83"}) add(s);
  v.unk_id = 1;
  v.bos_id = 2;
  v.sep_id = 3;
  v.pad_id = 0;
  v.mask_id = 4;
  v.add_bos = true;
  v.add_space_prefix = false;
  v.index();
  return ariadne::Tokenizer::create(std::move(v));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<ariadne::Tokenizer> tok = make_tokenizer();
  if (size == 0) return 0;
  const bool add_special = data[0] & 1;
  const bool parse_special = data[0] & 2;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const int32_t n_vocab = tok->vocab().size();

  const std::vector<int32_t> ids = tok->encode(text, add_special, parse_special);  // must not throw
  bool has_unk = false;
  bool has_control = false;
  for (int32_t id : ids) {
    if (id < 0 || id >= n_vocab) std::abort();
    has_unk |= id == tok->vocab().unk_id;
    has_control |= tok->vocab().types[static_cast<size_t>(id)] == ariadne::TokenType::Control;
  }
  const std::string decoded = tok->decode(ids, /*special=*/false);
  if (!has_unk && !has_control) {
    if (tok->encode(decoded, false, false) != ids) std::abort();
  }

  // The input's bytes as ids (some out of range) for decode and the stream decoder.
  std::vector<int32_t> raw;
  for (size_t i = 1; i < size; ++i) raw.push_back(static_cast<int32_t>(data[i]) - 8);
  try {
    (void)tok->decode(raw, /*special=*/true);
  } catch (const ariadne::Error&) {
  }
  ariadne::StreamDecoder stream(*tok, true);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  return 0;
}
