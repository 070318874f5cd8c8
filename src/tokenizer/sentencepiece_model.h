// SentencePiece's tokenizer.model (a serialized sentencepiece.ModelProto) as a Vocab for the Spm
// tokenizer.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "tokenizer/vocab.h"

namespace ariadne {

// Reads the fields the Spm tokenizer needs (field numbers of sentencepiece_model.proto):
//   ModelProto      pieces = 1 (repeated SentencePiece), trainer_spec = 2, normalizer_spec = 3
//   SentencePiece   piece = 1 (string), score = 2 (float), type = 3 (NORMAL 1, UNKNOWN 2, CONTROL 3,
//                   USER_DEFINED 4, UNUSED 5, BYTE 6; default NORMAL)
//   TrainerSpec     model_type = 3 (UNIGRAM 1 default, BPE 2, WORD 3, CHAR 4), byte_fallback = 35,
//                   unk_id = 40 (default 0), bos_id = 41 (1), eos_id = 42 (2), pad_id = 43 (-1)
//   NormalizerSpec  add_dummy_prefix = 3 (default true)
// Other fields are skipped. Piece types map one to one onto TokenType; user-defined pieces get U+2581
// written back as ' ' (they are matched against raw text, as llama.cpp's converter does). add_bos is set
// (Llama's convention), add_space_prefix = add_dummy_prefix. Only BPE models are accepted: the Spm
// tokenizer's score-ordered merging is what SentencePiece's BPE does, not what its unigram model does.
// Throws Error naming the file and the field on malformed input (truncated varints or lengths, wrong wire
// types, ids outside the vocabulary).
Vocab vocab_from_sentencepiece_model(const std::string& path);

// The same from bytes in memory; `name` stands for the file in error messages.
Vocab vocab_from_sentencepiece_model_bytes(std::span<const uint8_t> bytes, const std::string& name);

}  // namespace ariadne
