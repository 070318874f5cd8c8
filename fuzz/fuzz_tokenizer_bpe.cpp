// libFuzzer target: byte-level BPE encode + decode of arbitrary bytes, through every pre-tokenizer, with a
// small vocabulary built here (all 256 byte characters, a few merges, a control and an added token).
// First input byte: pre-tokenizer and parse_special; the rest: the text. Valid UTF-8 must decode back to
// itself exactly (every byte has a token); anything else must encode without crashing or throwing.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string byte_char(int b) {
  const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
  int cp = b;
  if (!printable) {
    cp = 256;
    for (int k = 0; k < b; ++k)
      if (!((k >= 0x21 && k <= 0x7e) || (k >= 0xa1 && k <= 0xac) || k >= 0xae)) ++cp;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xc0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3f));
  }
  return s;
}

std::unique_ptr<ariadne::Tokenizer> make(const char* pre) {
  ariadne::Vocab v;
  v.model = ariadne::TokenizerModel::Bpe;
  v.pre = pre;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(byte_char(b));
  const std::string sp = byte_char(' '), nl = byte_char('\n');
  v.merges = {sp + " t",     "h e", "i n",         sp + "t he",
              "a n",         "e r", sp + " " + sp, sp + sp + " " + sp + sp,
              nl + " " + nl, "1 2", "12 3",        byte_char(0xc3) + " " + byte_char(0xa4),
              "' s",         "o u"};
  for (const std::string& m : v.merges) {
    const size_t k = m.find(' ', 1);
    v.tokens.push_back(m.substr(0, k) + m.substr(k + 1));
  }
  v.types.assign(v.tokens.size(), ariadne::TokenType::Normal);
  v.tokens.push_back("<|end|>");
  v.types.push_back(ariadne::TokenType::Control);
  v.tokens.push_back("<tool>");
  v.types.push_back(ariadne::TokenType::UserDefined);
  v.ignore_merges = std::string(pre) == "llama-bpe";
  return ariadne::Tokenizer::create(std::move(v));
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp = 0;
    size_t n = 0;
    if (c < 0x80)
      n = 1, cp = c;
    else if ((c >> 5) == 6)
      n = 2, cp = c & 0x1f;
    else if ((c >> 4) == 14)
      n = 3, cp = c & 0x0f;
    else if ((c >> 3) == 30)
      n = 4, cp = c & 0x07;
    else
      return false;
    if (i + n > s.size()) return false;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
      cp = cp << 6 | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    }
    const uint32_t min = n == 1 ? 0 : n == 2 ? 0x80 : n == 3 ? 0x800 : 0x10000;
    if (cp < min || cp > 0x10ffff) return false;
    i += n;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* kPres[] = {"gpt-2",          "llama-bpe", "qwen2",     "deepseek-llm",
                                "deepseek-coder", "falcon",    "starcoder", "default"};
  static std::vector<std::unique_ptr<ariadne::Tokenizer>> toks = [] {
    std::vector<std::unique_ptr<ariadne::Tokenizer>> t;
    for (const char* p : kPres) t.push_back(make(p));
    return t;
  }();
  if (size == 0) return 0;
  const ariadne::Tokenizer& tok = *toks[data[0] % 8];
  const bool parse_special = (data[0] & 8) != 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::vector<int32_t> ids = tok.encode(text, /*add_special=*/true, parse_special);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.vocab().size()) std::abort();
  const std::string back = tok.decode(ids, /*special=*/true);
  if (valid_utf8(text) && back != text) std::abort();
  return 0;
}
