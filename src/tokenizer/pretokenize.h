// Pre-tokenizers of byte-level BPE vocabularies: the regex lists llama.cpp applies per tokenizer.ggml.pre
// (llama-vocab.cpp's pre-type table, unicode.cpp's unicode_regex_split), run with PCRE2.
//
// Semantics (as llama.cpp): the text is decoded as UTF-8, each invalid byte becoming U+FFFD; then each
// regex of the list, in order, splits every piece from the previous pass into its matches and the
// unmatched gaps between them (both kept). Matching sees one piece at a time, so lookaheads and `$` stop at
// the piece's end. `\s` means Unicode White_Space (what llama.cpp's tables and Hugging Face's regex use;
// PCRE2's own \s leaves out U+0085).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ariadne {

class PreTokenizer {
 public:
  // A pre-token: bytes [begin, end) of the subject returned by split().
  struct Piece {
    size_t begin, end;
  };

  // The pre-tokenizer of a tokenizer.ggml.pre name ("gpt-2", "llama-bpe", "qwen2", "deepseek-coder",
  // "falcon", "starcoder", "default", ... and llama.cpp's aliases of these). Throws Error for a name it
  // does not know.
  explicit PreTokenizer(const std::string& pre);
  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // True when PreTokenizer(pre) would succeed.
  static bool known(std::string_view pre);
  // True for the pre names whose vocabularies llama.cpp encodes with ignore_merges (the Llama-3 family).
  static bool ignores_merges(std::string_view pre);

  // Splits text (any bytes) into pre-tokens, replacing pieces. Returns the subject the pieces index into:
  // text itself when it is valid UTF-8 (the usual case), else a repaired copy kept in scratch (invalid
  // bytes as U+FFFD, overlong forms re-encoded, as llama.cpp does). Thread-safe (const, no shared state).
  std::string_view split(std::string_view text, std::string& scratch, std::vector<Piece>& pieces) const;

 private:
  struct Regex;
  std::vector<std::unique_ptr<Regex>> regexes_;
  std::string pre_;
};

// The tokenizer.ggml.pre name whose pre-tokenizer a Hugging Face tokenizer.json Split regex denotes
// (Llama-3's, Qwen2's, GPT-2's pattern as written in tokenizer.json or in llama.cpp's adapted form); empty
// when the pattern is not one of them.
std::string pre_for_hf_regex(std::string_view regex);

}  // namespace ariadne
