// llama2.c's tokenizer.bin (Karpathy's llama2.c export of a SentencePiece BPE model) as a Vocab.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "tokenizer/vocab.h"

namespace ariadne {

// Reads tokenizer.bin:
//   int32 max_token_length
//   n_vocab times: float32 score, int32 length, `length` bytes of token text (no terminator)
// all little-endian. The file does not store the token count: n_vocab > 0 (the model's vocab_size) must
// match the number of records exactly; n_vocab <= 0 reads records until the end of the file.
//
// The result runs in the Spm tokenizer the way llama2.c's run.c encodes and decodes:
//  - llama2.c pieces spell a space as ' ' where SentencePiece writes U+2581, so normal pieces get
//    ' ' -> U+2581 (Spm escapes the text's spaces the same way, and token_to_piece undoes it);
//  - ids 0, 1, 2 are <unk> (Unknown), <s>, </s> (Control; the export stores them as "\n<s>\n" and
//    "\n</s>\n", kept here as "<s>" and "</s>" so that they print as nothing and parse as special text);
//  - "<0xNN>" pieces are Byte tokens (byte fallback), everything else Normal;
//  - bos 1, eos 2, unk 0, add_bos, add_space_prefix (run.c's dummy " " prefix).
// Throws Error naming the file when it is truncated, a length is out of range or the count mismatches.
Vocab vocab_from_llama2c(const std::string& path, int32_t n_vocab);
// The same over the file's bytes (the fuzz target); errors name `path`.
Vocab vocab_from_llama2c(std::span<const uint8_t> bytes, const std::string& path, int32_t n_vocab);

}  // namespace ariadne
