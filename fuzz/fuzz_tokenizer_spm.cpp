// libFuzzer target: the Spm tokenizer over arbitrary bytes, with a vocabulary built here (no files).
// The first input byte picks the flags (space prefix, special parsing, BOS). Checks: no crash or hang; the
// stream decoder emits exactly what decode gives; valid UTF-8 without U+2581 or special-token text decodes
// back to itself (every byte has a byte token, so nothing becomes <unk>).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

using ariadne::TokenType;

std::unique_ptr<ariadne::Tokenizer> make(bool add_space_prefix) {
  ariadne::Vocab v;
  v.model = ariadne::TokenizerModel::Spm;
  auto add = [&](std::string t, float score, TokenType type) {
    v.tokens.push_back(std::move(t));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, TokenType::Unknown);
  add("<s>", 0, TokenType::Control);
  add("</s>", 0, TokenType::Control);
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b)
    add(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">", 0, TokenType::Byte);
  const std::string sp = "\xe2\x96\x81";
  float score = -1;
  // Single characters, then longer pieces with falling scores so that merge order matters.
  for (const std::string& t :
       std::vector<std::string>{sp, "a", "b", "c", "<", "s", ">", "\xc3\xa9", "\xe2\x82\xac", "\n"})
    add(t, score--, TokenType::Normal);
  for (const std::string& t : std::vector<std::string>{sp + sp, sp + "a", "ab", "ba", "bab", "abc", sp + "ab",
                                                       sp + sp + sp + sp, "aa", "aaaa", "<s",
                                                       "\xc3\xa9"
                                                       "a",
                                                       sp + "\xe2\x82\xac", "cc", "ccc"})
    add(t, score--, TokenType::Normal);
  add("[unused]", 0, TokenType::Unused);
  v.unk_id = 0, v.bos_id = 1, v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = add_space_prefix;
  v.index();
  return ariadne::Tokenizer::create(std::move(v));
}

bool valid_utf8_structure(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<uint8_t>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<uint8_t>(s[i + k]) & 0xc0) != 0x80) return false;
    i += len;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::unique_ptr<ariadne::Tokenizer> with_prefix = make(true);
  static const std::unique_ptr<ariadne::Tokenizer> without_prefix = make(false);
  if (size == 0) return 0;
  const uint8_t flags = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const ariadne::Tokenizer& tok = (flags & 1) ? *with_prefix : *without_prefix;
  const bool parse_special = flags & 2, add_special = flags & 4, special = flags & 8;

  const std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab().size()) std::abort();
  const std::string decoded = tok.decode(ids, special);

  ariadne::StreamDecoder stream(tok, special);
  std::string streamed;
  for (int32_t id : ids) streamed += stream.push(id);
  streamed += stream.flush();
  if (streamed != decoded) std::abort();

  // Special-token text is excluded even without parse_special: merging "<s" and ">" forms "<s>", which is
  // the control token (llama.cpp's merge looks text up without regard to type), and that prints as nothing.
  const bool plain = text.find("<s>") == std::string_view::npos &&
                     text.find("</s>") == std::string_view::npos &&
                     text.find("<unk>") == std::string_view::npos;
  if (plain && !add_special && valid_utf8_structure(text) &&
      text.find("\xe2\x96\x81") == std::string_view::npos && decoded != text)
    std::abort();
  return 0;
}
