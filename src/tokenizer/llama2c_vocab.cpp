#include "tokenizer/llama2c_vocab.h"

#include <cstring>
#include <fstream>
#include <iterator>
#include <span>
#include <vector>

#include "core/error.h"

namespace ariadne {

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open the llama2.c tokenizer file", path);
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("{}: read error", path);
  return bytes;
}

bool is_byte_piece(const std::string& t) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && hex(t[3]) && hex(t[4]) && t[5] == '>';
}

std::string space_to_sentencepiece(const std::string& t) {
  std::string out;
  out.reserve(t.size());
  for (char c : t) {
    if (c == ' ')
      out += "\xe2\x96\x81";
    else
      out += c;
  }
  return out;
}

}  // namespace

Vocab vocab_from_llama2c(const std::string& path, int32_t n_vocab) {
  const std::vector<uint8_t> bytes = read_file(path);
  return vocab_from_llama2c(bytes, path, n_vocab);
}

Vocab vocab_from_llama2c(std::span<const uint8_t> bytes, const std::string& path, int32_t n_vocab) {
  size_t pos = 0;
  // Little-endian reads; every one checked against what is left of the file.
  auto read_i32 = [&](const char* what, size_t index) {
    if (bytes.size() - pos < 4)
      fail("{}: truncated at byte {}: expected the {} of token {} (4 bytes), {} bytes left", path, pos, what,
           index, bytes.size() - pos);
    int32_t v;
    std::memcpy(&v, bytes.data() + pos, 4);
    pos += 4;
    return v;
  };
  if (bytes.size() < 4)
    fail("{}: truncated: {} bytes, expected at least the 4-byte max_token_length", path, bytes.size());
  int32_t max_len;
  std::memcpy(&max_len, bytes.data(), 4);
  pos = 4;
  // 1 MiB per token is far beyond any real vocabulary and keeps a corrupt header from passing.
  if (max_len < 1 || max_len > (1 << 20))
    fail("{}: max_token_length {} is out of range [1, {}]", path, max_len, 1 << 20);

  Vocab v;
  v.model = TokenizerModel::Spm;
  while (pos < bytes.size() && (n_vocab <= 0 || v.tokens.size() < static_cast<size_t>(n_vocab))) {
    const size_t index = v.tokens.size();
    const int32_t score_bits = read_i32("score", index);
    float score;
    std::memcpy(&score, &score_bits, 4);
    const int32_t len = read_i32("length", index);
    if (len < 0 || len > max_len)
      fail("{}: token {}: length {} is out of range [0, max_token_length = {}]", path, index, len, max_len);
    if (bytes.size() - pos < static_cast<size_t>(len))
      fail("{}: truncated at byte {}: token {} needs {} bytes of text, {} left", path, pos, index, len,
           bytes.size() - pos);
    v.tokens.emplace_back(reinterpret_cast<const char*>(bytes.data() + pos), static_cast<size_t>(len));
    v.scores.push_back(score);
    pos += static_cast<size_t>(len);
  }
  const size_t n = v.tokens.size();
  if (n_vocab > 0 && n != static_cast<size_t>(n_vocab))
    fail("{}: holds {} tokens, the model's vocab_size is {}", path, n, n_vocab);
  if (n_vocab > 0 && pos != bytes.size())
    fail("{}: {} bytes after the {} tokens the model's vocab_size asks for", path, bytes.size() - pos,
         n_vocab);
  if (n < 3) fail("{}: holds {} tokens, expected at least <unk>, <s>, </s>", path, n);

  v.types.resize(n, TokenType::Normal);
  for (size_t i = 0; i < n; ++i) {
    std::string& t = v.tokens[i];
    if (i == 0) {
      v.types[i] = TokenType::Unknown;
    } else if (i == 1 || i == 2) {
      // The export wraps them in newlines so that they stand out when printed raw; run.c never prints
      // them (BOS ends a sequence, EOS is never sampled into the text).
      if (t.size() >= 2 && t.front() == '\n' && t.back() == '\n') t = t.substr(1, t.size() - 2);
      v.types[i] = TokenType::Control;
    } else if (is_byte_piece(t)) {
      v.types[i] = TokenType::Byte;
    } else {
      t = space_to_sentencepiece(t);
    }
  }
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_eos = false;
  v.add_space_prefix = true;
  v.index();
  return v;
}

}  // namespace ariadne
