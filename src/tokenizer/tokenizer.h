// Text <-> token ids, matching the reference tokenizers (llama.cpp's test vectors) token for token.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace ariadne {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Builds the tokenizer of vocab.model (Spm, Bpe with vocab.pre's pre-tokenizer, WordPiece).
  static std::unique_ptr<Tokenizer> create(Vocab vocab);

  // Encodes text. add_special: add BOS (and EOS) as the vocabulary asks (Vocab::add_bos / add_eos).
  // parse_special: control tokens written in the text ("<|eot_id|>") become their ids; without it they are
  // plain text. User-defined (added) tokens are always matched, as in llama.cpp.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes a token stands for (byte tokens as their byte, ▁ as space, Ġ-encoding undone). Control
  // tokens give their text only when special is true, else nothing.
  virtual std::string token_to_piece(int32_t id, bool special) const = 0;

  // Concatenated pieces; for Spm with add_space_prefix, the space the prefix introduced at the start is
  // removed again (llama.cpp's detokenize behaviour). Ids outside the vocabulary throw Error.
  virtual std::string decode(std::span<const int32_t> ids, bool special) const;

  const Vocab& vocab() const { return vocab_; }

 protected:
  explicit Tokenizer(Vocab vocab);
  // Encodes a run of ordinary text (no special tokens inside) and appends the ids to out. after_special:
  // the run starts the text or follows a special token (Spm then prefixes a space when add_space_prefix).
  virtual void encode_text(std::string_view text, bool after_special, std::vector<int32_t>& out) const = 0;

  Vocab vocab_;

 private:
  // Special tokens matched in text, longest first: user-defined only, and with control/unknown tokens too
  // (parse_special). Built once, since llama-3 vocabularies have 128K entries to scan.
  std::vector<int32_t> specials_user_;
  std::vector<int32_t> specials_all_;
};

// Factories of the model files (spm.cpp, bpe.cpp, wordpiece.cpp).
std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab vocab);
std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocab vocab);
std::unique_ptr<Tokenizer> make_wordpiece_tokenizer(Vocab vocab);

// Decodes a stream of ids one at a time, holding back an incomplete UTF-8 sequence until it completes
// (so a terminal never sees half a character).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool special = false);
  // Returns the text that became complete with this id (possibly empty).
  std::string push(int32_t id);
  // Whatever is still held back (an incomplete sequence at the end of the stream), as is.
  std::string flush();

 private:
  const Tokenizer& tokenizer_;
  bool special_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace ariadne
