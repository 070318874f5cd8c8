// SentencePiece-style BPE (llama.cpp's "llama" vocabulary type): spaces become U+2581, the text is split
// into UTF-8 characters, and adjacent symbols are merged while their concatenation is a vocabulary entry,
// always taking the pair whose merged token scores highest (leftmost on ties). Leftover symbols that are
// not tokens fall back to byte tokens <0xNN>. Same results as llama.cpp's llm_tokenizer_spm.
#include <array>
#include <queue>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace ariadne {

namespace {

constexpr std::string_view kSpace = "\xe2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space

// Byte length of the UTF-8 sequence a lead byte announces. Continuation bytes and invalid leads count as
// one byte, 0xF8..0xFF as four, exactly as llama.cpp splits (so invalid input tokenizes the same way).
size_t utf8_len(char lead) {
  static constexpr std::array<uint8_t, 16> kLen = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[static_cast<uint8_t>(lead) >> 4];
}

// "<0xNN>" -> NN, or -1 when the text is not a byte token's text.
int parse_byte_token(std::string_view text) {
  if (text.size() != 6 || text.substr(0, 3) != "<0x" || text[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(text[3]), lo = hex(text[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0;;) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) {
      out.append(s.substr(pos));
      return out;
    }
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
}

// llama.cpp's clean_up_tokenization_spaces passes over decoded text, in place like the reference (a
// later pass sees the NUL the apostrophe pass leaves behind): " ?" " !" " ." " ," lose the space, a lone
// apostrophe between spaces loses both spaces, " 's" " 'm" " 're" " 've" lose the space.
void clean_up_spaces(std::string& t) {
  size_t n = t.size();
  size_t total = n ? 1 : 0;
  for (size_t i = 1; i < n; ++i) {
    const char x = t[i];
    if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) --total;
    t[total++] = x;
  }
  n = total;
  total = n ? 1 : 0;
  for (size_t i = 1; i < n; ++i) {
    const char x = t[i];
    if (x == '\'' && i + 1 < n && t[i - 1] == ' ' && t[i + 1] == ' ') {
      --total;
      t[++i] = '\0';
    }
    t[total++] = x;
  }
  n = total;
  total = n ? 1 : 0;
  for (size_t i = 1; i < n; ++i) {
    const char x = t[i];
    if (t[i - 1] == ' ' && x == '\'' && i + 1 < n) {
      const char x1 = t[i + 1];
      const char x2 = i + 2 < n ? t[i + 2] : '\0';
      if (x1 == 's' || x1 == 'm' || (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) --total;
    }
    t[total++] = x;
  }
  t.resize(total);
}

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(Vocab vocab) : Tokenizer(std::move(vocab)) {
    const int32_t n = vocab_.size();
    // Views into vocab_.tokens, which never changes after construction. First occurrence wins, as in
    // Vocab::index (llama.cpp refuses vocabularies with repeated texts, so it does not matter there).
    ids_.reserve(static_cast<size_t>(n));
    for (int32_t id = 0; id < n; ++id) {
      const std::string& t = vocab_.tokens[static_cast<size_t>(id)];
      if (!t.empty()) ids_.emplace(t, id);
    }
    // Byte fallback: "<0xNN>" if present, else the one-byte text (llama.cpp's byte_to_token).
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; ++b) {
      const char name[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
      int32_t id = lookup(std::string_view(name, 6));
      if (id < 0) {
        const char c = static_cast<char>(b);
        id = lookup(std::string_view(&c, 1));
      }
      byte_ids_[static_cast<size_t>(b)] = id;
    }
    pieces_.reserve(static_cast<size_t>(n));
    for (int32_t id = 0; id < n; ++id) pieces_.push_back(make_piece(id));
  }
  // ids_ points into this object's vocabulary.
  SpmTokenizer(const SpmTokenizer&) = delete;
  SpmTokenizer& operator=(const SpmTokenizer&) = delete;

  std::string token_to_piece(int32_t id, bool special) const override {
    if (id < 0 || id >= vocab_.size())
      fail("detokenize: token id {} is outside the vocabulary [0, {})", id, vocab_.size());
    const TokenType t = vocab_.types[static_cast<size_t>(id)];
    if (!special && (t == TokenType::Control || t == TokenType::Unknown)) return {};
    return pieces_[static_cast<size_t>(id)];
  }

  std::string decode(std::span<const int32_t> ids, bool special) const override {
    std::string text;
    // llama.cpp's detokenize: with add_space_prefix the first token (whatever it is) may drop one
    // leading space, the one encode's prefix introduced.
    bool strip = vocab_.add_space_prefix;
    for (int32_t id : ids) {
      std::string piece = token_to_piece(id, special);
      if (strip && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
      strip = false;
      text += piece;
    }
    if (vocab_.clean_spaces) clean_up_spaces(text);
    return text;
  }

 protected:
  void encode_text(std::string_view raw, bool after_special, std::vector<int32_t>& out) const override {
    if (raw.empty()) return;  // llama.cpp never tokenizes an empty fragment (no lone prefix token)
    std::string text;
    if (vocab_.add_space_prefix && after_special) text = kSpace;
    text += replace_all(raw, " ", kSpace);

    // Symbols form a doubly linked list over the text; a merged symbol extends its left neighbour, so
    // every live symbol is a contiguous byte range [begin, begin + len).
    struct Symbol {
      size_t begin, len;
      int32_t prev, next;
    };
    std::vector<Symbol> symbols;  // [n_chars]
    for (size_t off = 0; off < text.size();) {
      const size_t len = std::min(utf8_len(text[off]), text.size() - off);
      const auto index = static_cast<int32_t>(symbols.size());
      symbols.push_back({off, len, index - 1, off + len == text.size() ? -1 : index + 1});
      off += len;
    }

    struct Bigram {
      int32_t left, right;
      float score;
      size_t len;  // merged length when queued; a mismatch later means a side was merged meanwhile
    };
    auto worse = [](const Bigram& a, const Bigram& b) {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
    auto try_add = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      const Symbol& l = symbols[static_cast<size_t>(left)];
      const Symbol& r = symbols[static_cast<size_t>(right)];
      const std::string_view merged(text.data() + l.begin, l.len + r.len);
      const int32_t id = lookup(merged);
      if (id < 0) return;
      queue.push({left, right, score(id), merged.size()});
    };
    for (size_t i = 1; i < symbols.size(); ++i) try_add(static_cast<int32_t>(i - 1), static_cast<int32_t>(i));

    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = symbols[static_cast<size_t>(b.left)];
      Symbol& r = symbols[static_cast<size_t>(b.right)];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale entry
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) symbols[static_cast<size_t>(r.next)].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }

    for (int32_t i = symbols.empty() ? -1 : 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) {
      const Symbol& s = symbols[static_cast<size_t>(i)];
      const std::string_view piece(text.data() + s.begin, s.len);
      const int32_t id = lookup(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // Merged symbols are always tokens, so this is a single character the vocabulary lacks.
      for (char c : piece) {
        const int32_t byte_id = byte_ids_[static_cast<uint8_t>(c)];
        if (byte_id >= 0) {
          out.push_back(byte_id);
        } else if (vocab_.unk_id >= 0 && vocab_.unk_id < vocab_.size()) {
          out.push_back(vocab_.unk_id);
        } else {
          fail("tokenize: byte 0x{:02X} has no byte token <0x{:02X}> and the vocabulary has no unknown token",
               static_cast<uint8_t>(c), static_cast<uint8_t>(c));
        }
      }
    }
  }

 private:
  int32_t lookup(std::string_view s) const {
    auto it = ids_.find(s);
    return it == ids_.end() ? -1 : it->second;
  }
  float score(int32_t id) const {
    return static_cast<size_t>(id) < vocab_.scores.size() ? vocab_.scores[static_cast<size_t>(id)] : 0.0f;
  }

  // The piece with special = true (llama.cpp caches the same): control/unknown/user-defined tokens as their
  // text, normal tokens with U+2581 turned back into spaces, byte tokens as their byte; other types
  // (unused, undefined) and malformed byte tokens give nothing.
  std::string make_piece(int32_t id) const {
    const std::string& text = vocab_.tokens[static_cast<size_t>(id)];
    switch (vocab_.types[static_cast<size_t>(id)]) {
      case TokenType::Control:
      case TokenType::Unknown:
      case TokenType::UserDefined:
        return text;
      case TokenType::Normal:
        return replace_all(text, kSpace, " ");
      case TokenType::Byte: {
        const int b = parse_byte_token(text);
        return b < 0 ? std::string() : std::string(1, static_cast<char>(b));
      }
      case TokenType::Unused:
      case TokenType::Undefined:
        break;
    }
    return {};
  }

  std::unordered_map<std::string_view, int32_t> ids_;  // token text -> id, views into vocab_.tokens
  std::array<int32_t, 256> byte_ids_{};                // byte -> its fallback token, -1 if none
  std::vector<std::string> pieces_;                    // [n_vocab] token_to_piece(id, special = true)
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab vocab) {
  return std::make_unique<SpmTokenizer>(std::move(vocab));
}

}  // namespace ariadne
