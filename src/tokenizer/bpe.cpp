// Byte-level BPE (GPT-2 style), matching llama.cpp's llm_tokenizer_bpe token for token:
//   1. pre-tokenize with the regex list of Vocab::pre (pretokenize.h);
//   2. map each byte of a pre-token to its printable stand-in character (GPT-2's bytes_to_unicode);
//   3. with ignore_merges (Llama 3), a pre-token that is itself a vocabulary entry is emitted whole;
//   4. otherwise start from one symbol per byte and repeatedly merge the adjacent pair of lowest merge rank
//      (ties: leftmost), until no adjacent pair has a rank;
//   5. a final symbol that is not a token falls back to single-byte tokens of its encoded text, and bytes
//      without such a token are dropped (llama.cpp's behaviour).
#include <algorithm>
#include <array>
#include <cstdint>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/tokenizer.h"

namespace ariadne {

namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes (controls,
// space, DEL, NBSP, soft hyphen, ...) map to U+0100.. in byte order.
std::array<uint32_t, 256> byte_to_codepoint_table() {
  std::array<uint32_t, 256> t{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
    t[b] = printable ? b : next++;
  }
  return t;
}

std::string utf8_of(uint32_t cpt) {
  std::string s;
  if (cpt < 0x80) {
    s += static_cast<char>(cpt);
  } else {
    // Only U+0080..U+0143 occur here.
    s += static_cast<char>(0xc0 | (cpt >> 6));
    s += static_cast<char>(0x80 | (cpt & 0x3f));
  }
  return s;
}

struct Merge {
  int32_t rank;
  int32_t result;  // symbol id of the merged string
};

inline uint64_t pair_key(int32_t left, int32_t right) {
  return static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32 | static_cast<uint32_t>(right);
}

struct PairHash {
  size_t operator()(uint64_t k) const noexcept {
    // Murmur3's finalizer: the two halves are small integers, std::hash<uint64_t> is the identity.
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
};

// Reusable buffers of one encode_text call.
struct Workspace {
  struct Symbol {
    int32_t sym;         // symbol id (see BpeTokenizer::sym_of)
    uint32_t begin, n;   // bytes of the pre-token it covers; n == 0 once merged into its left neighbour
    int32_t prev, next;  // neighbours in the chain, -1 at the ends
  };
  struct Bigram {
    int32_t rank;
    int32_t left, right;          // symbol indices
    int32_t left_sym, right_sym;  // their symbol ids when queued (stale entries are skipped)
    int32_t result;               // symbol id of the merged string
  };
  std::vector<Symbol> symbols;
  std::vector<Bigram> heap;
  std::string encoded;  // the pre-token in byte-encoded form (ignore_merges lookup)
};

// Min-heap order on (rank, left): llama.cpp's llm_bigram_bpe comparator.
inline bool bigram_after(const Workspace::Bigram& a, const Workspace::Bigram& b) {
  return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
}

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(Vocab vocab);

  std::string token_to_piece(int32_t id, bool special) const override;
  std::string decode(std::span<const int32_t> ids, bool special) const override;

 protected:
  void encode_text(std::string_view text, bool after_special, std::vector<int32_t>& out) const override;

 private:
  // Appends the tokens of one pre-token (raw bytes).
  void encode_word(std::string_view word, Workspace& ws, std::vector<int32_t>& out) const;
  // The symbol id of a string: its token id, or an id >= n_vocab for strings that only occur in merges.
  int32_t sym_of(const std::string& s, bool create);

  PreTokenizer pre_;
  bool ignore_merges_;
  int32_t n_vocab_;
  std::unordered_map<std::string, int32_t> extra_syms_;      // strings of merges that are not tokens
  std::unordered_map<uint64_t, Merge, PairHash> merges_;     // (left sym, right sym) -> lowest rank, result
  std::array<int32_t, 256> byte_sym_{};                      // symbol id of each byte's stand-in character
  std::array<std::string, 256> byte_text_;                   // each byte's stand-in character (UTF-8)
  std::array<std::array<int32_t, 2>, 256> byte_fallback_{};  // single-byte tokens of byte_text_, -1 if none
  std::array<int16_t, 0x144> codepoint_byte_{};              // inverse of the byte map, -1 where unmapped
};

BpeTokenizer::BpeTokenizer(Vocab vocab)
    : Tokenizer(std::move(vocab)),
      pre_(vocab_.pre),
      ignore_merges_(vocab_.ignore_merges || PreTokenizer::ignores_merges(vocab_.pre)),
      n_vocab_(vocab_.size()) {
  const std::array<uint32_t, 256> cp = byte_to_codepoint_table();
  codepoint_byte_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    byte_text_[static_cast<size_t>(b)] = utf8_of(cp[static_cast<size_t>(b)]);
    codepoint_byte_[cp[static_cast<size_t>(b)]] = static_cast<int16_t>(b);
  }
  for (int b = 0; b < 256; ++b) {
    const std::string& t = byte_text_[static_cast<size_t>(b)];
    byte_sym_[static_cast<size_t>(b)] = sym_of(t, true);
    auto& fb = byte_fallback_[static_cast<size_t>(b)];
    fb = {-1, -1};
    for (size_t k = 0; k < t.size(); ++k) fb[k] = vocab_.find(std::string(1, t[k]));
  }
  // llama.cpp splits a merge line at its first space after the first character and keeps the first rank
  // of a repeated pair.
  merges_.reserve(vocab_.merges.size());
  for (size_t r = 0; r < vocab_.merges.size(); ++r) {
    const std::string& m = vocab_.merges[r];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) continue;
    const std::string left = m.substr(0, sp), right = m.substr(sp + 1);
    if (left.empty() || right.empty()) continue;
    const int32_t l = sym_of(left, true), rr = sym_of(right, true), res = sym_of(left + right, true);
    merges_.emplace(pair_key(l, rr), Merge{static_cast<int32_t>(r), res});
  }
}

int32_t BpeTokenizer::sym_of(const std::string& s, bool create) {
  const int32_t id = vocab_.find(s);
  if (id >= 0) return id;
  auto it = extra_syms_.find(s);
  if (it != extra_syms_.end()) return it->second;
  if (!create) return -1;
  const int32_t nid = n_vocab_ + static_cast<int32_t>(extra_syms_.size());
  extra_syms_.emplace(s, nid);
  return nid;
}

void BpeTokenizer::encode_word(std::string_view word, Workspace& ws, std::vector<int32_t>& out) const {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(word[i]); };
  if (ignore_merges_) {
    ws.encoded.clear();
    for (size_t i = 0; i < word.size(); ++i) ws.encoded += byte_text_[byte(i)];
    const int32_t id = vocab_.find(ws.encoded);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  auto& sy = ws.symbols;
  auto& heap = ws.heap;
  sy.clear();
  heap.clear();
  const auto n = static_cast<int32_t>(word.size());
  for (int32_t i = 0; i < n; ++i)
    sy.push_back({byte_sym_[byte(static_cast<size_t>(i))], static_cast<uint32_t>(i), 1, i - 1,
                  i + 1 < n ? i + 1 : -1});
  const auto push_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    auto it = merges_.find(pair_key(sy[static_cast<size_t>(left)].sym, sy[static_cast<size_t>(right)].sym));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, left, right, sy[static_cast<size_t>(left)].sym,
                    sy[static_cast<size_t>(right)].sym, it->second.result});
    std::push_heap(heap.begin(), heap.end(), bigram_after);
  };
  for (int32_t i = 1; i < n; ++i) push_pair(i - 1, i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), bigram_after);
    const Workspace::Bigram b = heap.back();
    heap.pop_back();
    auto& l = sy[static_cast<size_t>(b.left)];
    auto& r = sy[static_cast<size_t>(b.right)];
    // Stale: one side was merged away or has grown since the pair was queued. (A symbol's start never
    // moves, so equal ids on both sides mean the pair is still the one that was ranked.)
    if (l.n == 0 || r.n == 0 || l.next != b.right || l.sym != b.left_sym || r.sym != b.right_sym) continue;
    l.sym = b.result;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) sy[static_cast<size_t>(r.next)].prev = b.left;
    push_pair(l.prev, b.left);
    push_pair(b.left, l.next);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = sy[static_cast<size_t>(i)].next) {
    const auto& s = sy[static_cast<size_t>(i)];
    if (s.sym < n_vocab_) {
      out.push_back(s.sym);
      continue;
    }
    for (uint32_t k = s.begin; k < s.begin + s.n; ++k)
      for (int32_t id : byte_fallback_[byte(k)])
        if (id >= 0) out.push_back(id);
  }
}

void BpeTokenizer::encode_text(std::string_view text, bool /*after_special*/,
                               std::vector<int32_t>& out) const {
  std::string scratch;
  std::vector<PreTokenizer::Piece> pieces;
  const std::string_view subject = pre_.split(text, scratch, pieces);
  Workspace ws;
  // Pre-tokens repeat a lot in running text (the, and, ...): remember each short one's tokens for the
  // rest of this call. Keys view the subject, which outlives the map.
  constexpr size_t kCacheMinText = 256, kCacheMaxWord = 64;
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;  // word -> [begin, end) of ids
  std::vector<int32_t> cached;
  const bool use_cache = subject.size() >= kCacheMinText;
  for (const PreTokenizer::Piece& p : pieces) {
    const std::string_view word = subject.substr(p.begin, p.end - p.begin);
    if (!use_cache || word.size() > kCacheMaxWord) {
      encode_word(word, ws, out);
      continue;
    }
    auto it = cache.find(word);
    if (it != cache.end()) {
      out.insert(out.end(), cached.begin() + it->second.first, cached.begin() + it->second.second);
      continue;
    }
    const size_t start = out.size();
    encode_word(word, ws, out);
    const auto cb = static_cast<uint32_t>(cached.size());
    cached.insert(cached.end(), out.begin() + static_cast<ptrdiff_t>(start), out.end());
    cache.emplace(word, std::make_pair(cb, static_cast<uint32_t>(cached.size())));
  }
}

std::string BpeTokenizer::token_to_piece(int32_t id, bool special) const {
  if (id < 0 || id >= n_vocab_)
    fail("detokenize: token id {} is outside the vocabulary [0, {})", id, n_vocab_);
  const std::string& text = vocab_.tokens[static_cast<size_t>(id)];
  switch (vocab_.types[static_cast<size_t>(id)]) {
    case TokenType::Control:
    case TokenType::Unknown:
      return special ? text : std::string();
    case TokenType::UserDefined:
      return text;
    case TokenType::Byte: {
      // "<0xNN>"
      if (text.size() != 6 || text.compare(0, 3, "<0x") != 0 || text[5] != '>') return {};
      const auto hex = [](char c) {
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                      : -1;
      };
      const int hi = hex(text[3]), lo = hex(text[4]);
      if (hi < 0 || lo < 0) return {};
      return std::string(1, static_cast<char>(hi * 16 + lo));
    }
    case TokenType::Normal:
      break;
    default:
      return {};  // Undefined, Unused: suppressed, as llama.cpp does
  }
  // Undo the byte mapping. A character outside the mapping (possible only in a malformed vocabulary) is
  // passed through as is; llama.cpp writes an "[UNK_BYTE_0x...]" marker instead.
  std::string piece;
  piece.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<uint8_t>(text[i]);
    uint32_t cpt = c;
    size_t len = 1;
    if (c >= 0xc0 && c < 0xe0 && i + 1 < text.size()) {
      cpt = (uint32_t{c} & 0x1f) << 6 | (static_cast<uint8_t>(text[i + 1]) & 0x3f);
      len = 2;
    } else if (c >= 0x80) {
      len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 1;
      len = std::min(len, text.size() - i);
      piece.append(text, i, len);
      i += len;
      continue;
    }
    if (cpt < codepoint_byte_.size() && codepoint_byte_[cpt] >= 0) {
      piece += static_cast<char>(codepoint_byte_[cpt]);
    } else {
      piece.append(text, i, len);
    }
    i += len;
  }
  return piece;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids, bool special) const {
  std::string t = Tokenizer::decode(ids, special);
  if (!vocab_.clean_spaces || t.size() < 2) return t;
  // llama.cpp's clean_up_tokenization_spaces (llama_vocab::impl::detokenize), three passes:
  // 1. drop the space before ? ! . ,
  std::string a;
  a.reserve(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    const char x = t[i];
    if (x == ' ' && i + 1 < t.size() &&
        (t[i + 1] == '?' || t[i + 1] == '!' || t[i + 1] == '.' || t[i + 1] == ','))
      continue;
    a += x;
  }
  // 2. " ' " -> "'"
  // (the dropped space after it is blanked in a, so it cannot also count as the space before a next ')
  std::string b;
  b.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (i > 0 && a[i] == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
      b.pop_back();
      b += '\'';
      a[++i] = '\0';
      continue;
    }
    b += a[i];
  }
  // 3. " 's", " 'm", " 're", " 've" -> without the space (" 't", " 'd", " 'll" keep it)
  std::string c;
  c.reserve(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    if (i > 0 && b[i] == '\'' && b[i - 1] == ' ' && i + 1 < b.size()) {
      const char x1 = b[i + 1];
      const char x2 = i + 2 < b.size() ? b[i + 2] : '\0';
      if (x1 == 's' || x1 == 'm' ||
          (i + 2 < b.size() && ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))))
        c.pop_back();
    }
    c += b[i];
  }
  return c;
}

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocab vocab) {
  return std::make_unique<BpeTokenizer>(std::move(vocab));
}

}  // namespace ariadne
