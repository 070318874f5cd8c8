#include "tokenizer/stream_encoder.h"

namespace ariadne {

namespace {

bool ascii_letter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// What may stand before a cut: letters, digits and sentence punctuation. Not '>' or ']', which end special
// tokens ("</s>", "[SEP]"): after a special token Spm adds a space prefix of its own, so the piece after it
// would not encode alike.
bool before_cut(char c) {
  if (ascii_letter(c) || (c >= '0' && c <= '9')) return true;
  switch (c) {
    case '.':
    case ',':
    case ';':
    case ':':
    case '!':
    case '?':
    case '"':
    case '\'':
    case ')':
      return true;
    default:
      return false;
  }
}

}  // namespace

StreamEncoder::StreamEncoder(const Tokenizer& tokenizer, bool parse_special, size_t chunk_bytes)
    : tokenizer_(tokenizer),
      parse_special_(parse_special),
      chunk_bytes_(chunk_bytes == 0 ? 1 : chunk_bytes) {}

void StreamEncoder::encode_piece(std::string_view piece, std::vector<int32_t>& out) {
  if (piece.empty()) return;
  // A later piece starts with the space of its cut; Spm's own space prefix stands for it.
  const Vocab& v = tokenizer_.vocab();
  if (started_ && v.model == TokenizerModel::Spm && v.add_space_prefix) piece.remove_prefix(1);
  const std::vector<int32_t> ids = tokenizer_.encode(piece, false, parse_special_);
  out.insert(out.end(), ids.begin(), ids.end());
  started_ = true;
}

void StreamEncoder::push(std::string_view text, std::vector<int32_t>& out) {
  pending_.append(text);
  while (pending_.size() > chunk_bytes_) {
    // The first cut place at or after chunk_bytes_ (a cut needs the bytes on both sides).
    size_t cut = std::string::npos;
    for (size_t p = std::max(searched_, chunk_bytes_); p + 1 < pending_.size(); ++p) {
      if (pending_[p] == ' ' && ascii_letter(pending_[p + 1]) && before_cut(pending_[p - 1])) {
        cut = p;
        break;
      }
    }
    if (cut == std::string::npos) {
      searched_ = pending_.size() - 1;  // the last byte may still become a cut's left side
      return;
    }
    encode_piece(std::string_view(pending_).substr(0, cut), out);
    pending_.erase(0, cut);
    searched_ = 0;
  }
}

void StreamEncoder::finish(std::vector<int32_t>& out) {
  encode_piece(pending_, out);
  pending_.clear();
  searched_ = 0;
  started_ = false;
}

}  // namespace ariadne
