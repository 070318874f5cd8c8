// Encoding a text that arrives in pieces (a file read block by block) while holding only a bounded part of
// it, with the same ids as encoding the whole text at once.
//
// The text is cut where no tokenizer we support merges across: before a space that follows a non-space and
// precedes an ASCII letter ("word| Next"). There BPE's pre-tokenizers (GPT-2, Llama-3, Qwen2 regexes) start
// a new pre-token (" Next" is one ` ?\p{L}+` match), and SentencePiece vocabularies hold no piece with "▁"
// after its first character. Spm prepends "▁" to every text it encodes (add_space_prefix), so a later
// piece is encoded without its leading space, which the prefix then stands for. A cut is an ASCII byte, so
// no UTF-8 character is split. Text with no such place (no spaces, e.g. Chinese) is held until one comes
// or the stream ends.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace ariadne {

class StreamEncoder {
 public:
  // No BOS/EOS is added (the caller places those); parse_special as Tokenizer::encode. A chunk is encoded
  // once at least chunk_bytes are held and a cut place exists.
  StreamEncoder(const Tokenizer& tokenizer, bool parse_special, size_t chunk_bytes = size_t{64} << 10);

  // Appends text; ids that became final are appended to out.
  void push(std::string_view text, std::vector<int32_t>& out);
  // Encodes whatever is held. The encoder can be used again afterwards for a new text.
  void finish(std::vector<int32_t>& out);

  size_t held_bytes() const { return pending_.size(); }

 private:
  void encode_piece(std::string_view piece, std::vector<int32_t>& out);

  const Tokenizer& tokenizer_;
  bool parse_special_;
  size_t chunk_bytes_;
  std::string pending_;   // text not yet encoded
  size_t searched_ = 0;   // no cut place in pending_ before this offset
  bool started_ = false;  // a piece was encoded: the next one continues the text
};

}  // namespace ariadne
