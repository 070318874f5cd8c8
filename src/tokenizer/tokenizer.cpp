#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/error.h"

namespace ariadne {

void Vocab::index() {
  token_to_id.clear();
  token_to_id.reserve(tokens.size());
  // First occurrence wins: a few real vocabularies repeat a token text.
  for (int32_t i = 0; i < size(); ++i) token_to_id.emplace(tokens[static_cast<size_t>(i)], i);
}

int32_t Vocab::find(const std::string& token) const {
  auto it = token_to_id.find(token);
  return it == token_to_id.end() ? -1 : it->second;
}

Tokenizer::Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
  if (vocab_.token_to_id.size() == 0) vocab_.index();
  if (vocab_.types.size() != vocab_.tokens.size())
    vocab_.types.resize(vocab_.tokens.size(), TokenType::Normal);
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    if (vocab_.tokens[static_cast<size_t>(id)].empty()) continue;
    const TokenType t = vocab_.types[static_cast<size_t>(id)];
    if (t == TokenType::UserDefined) specials_user_.push_back(id);
    if (t == TokenType::UserDefined || t == TokenType::Control || t == TokenType::Unknown)
      specials_all_.push_back(id);
  }
  for (auto* list : {&specials_user_, &specials_all_}) {
    std::stable_sort(list->begin(), list->end(), [&](int32_t a, int32_t b) {
      return vocab_.tokens[static_cast<size_t>(a)].size() > vocab_.tokens[static_cast<size_t>(b)].size();
    });
  }
}

std::unique_ptr<Tokenizer> Tokenizer::create(Vocab vocab) {
  if (vocab.tokens.empty()) fail("tokenizer: the vocabulary is empty");
  switch (vocab.model) {
    case TokenizerModel::Spm:
      return make_spm_tokenizer(std::move(vocab));
    case TokenizerModel::Bpe:
      return make_bpe_tokenizer(std::move(vocab));
    case TokenizerModel::WordPiece:
      return make_wordpiece_tokenizer(std::move(vocab));
  }
  fail("tokenizer: unknown model");
}

namespace {

// A piece of the input: raw text still to tokenize, or a special token already matched.
struct Fragment {
  bool is_token;
  int32_t token;
  std::string_view text;
};

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  // Split the text at occurrences of special tokens, longest tokens first (llama.cpp's
  // tokenizer_st_partition): user-defined tokens always, control and unknown tokens only when parse_special.
  std::vector<Fragment> fragments = {{false, -1, text}};
  for (int32_t id : parse_special ? specials_all_ : specials_user_) {
    const std::string& tok = vocab_.tokens[static_cast<size_t>(id)];
    std::vector<Fragment> next;
    for (const Fragment& f : fragments) {
      if (f.is_token) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t pos; (pos = rest.find(tok)) != std::string_view::npos;) {
        if (pos > 0) next.push_back({false, -1, rest.substr(0, pos)});
        next.push_back({true, id, {}});
        rest.remove_prefix(pos + tok.size());
      }
      if (!rest.empty()) next.push_back({false, -1, rest});
    }
    fragments.swap(next);
  }

  std::vector<int32_t> out;
  if (add_special && vocab_.add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  bool after_special = true;
  for (const Fragment& f : fragments) {
    if (f.is_token) {
      out.push_back(f.token);
      after_special = true;
    } else {
      encode_text(f.text, after_special, out);
      after_special = false;
    }
  }
  if (add_special && vocab_.add_eos && vocab_.eos_id >= 0) out.push_back(vocab_.eos_id);
  // BERT-style inputs end with [SEP] (llama.cpp's WordPiece path appends it with the special tokens).
  if (add_special && vocab_.model == TokenizerModel::WordPiece && vocab_.sep_id >= 0)
    out.push_back(vocab_.sep_id);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool special) const {
  std::string text;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_.size())
      fail("detokenize: token id {} is outside the vocabulary [0, {})", id, vocab_.size());
    text += token_to_piece(id, special);
  }
  return text;
}

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool special)
    : tokenizer_(tokenizer), special_(special) {}

namespace {

// Length of the longest prefix of s made of complete UTF-8 sequences; an invalid lead byte counts as
// complete (it is passed through, not held forever).
size_t complete_utf8_prefix(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
    if (i + len > s.size()) {
      // Hold back only if every byte present so far is a valid continuation.
      for (size_t j = i + 1; j < s.size(); ++j)
        if ((static_cast<unsigned char>(s[j]) & 0xc0) != 0x80) return s.size();
      return i;
    }
    i += len;
  }
  return i;
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  if (id < 0 || id >= tokenizer_.vocab().size())
    fail("detokenize: token id {} is outside the vocabulary [0, {})", id, tokenizer_.vocab().size());
  std::string piece = tokenizer_.token_to_piece(id, special_);
  // The first piece of a stream loses the space that Spm's prefix added, as a full decode would.
  if (first_ && tokenizer_.vocab().model == TokenizerModel::Spm && tokenizer_.vocab().add_space_prefix &&
      !piece.empty() && piece[0] == ' ')
    piece.erase(0, 1);
  first_ = false;
  pending_ += piece;
  const size_t n = complete_utf8_prefix(pending_);
  std::string out = pending_.substr(0, n);
  pending_.erase(0, n);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace ariadne
