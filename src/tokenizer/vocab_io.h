// Reading and writing vocabularies in llama.cpp's GGUF keys (tokenizer.ggml.*).
#pragma once

#include <string>

#include "formats/gguf.h"
#include "tokenizer/vocab.h"

namespace ariadne {

// True when the file carries a tokenizer (tokenizer.ggml.model present and not "none").
bool gguf_has_vocab(const GgufFile& file);

// Reads tokenizer.ggml.{model, pre, tokens, scores, token_type, merges, *_token_id, add_*},
// tokenizer.chat_template. Throws Error naming the file and key when something is missing or malformed
// (array lengths that disagree, ids outside the vocabulary, an unsupported model).
Vocab vocab_from_gguf(const GgufFile& file);

// Writes the same keys (what ariadne convert carries into the GGUF it produces).
void write_vocab_gguf(GgufWriter& w, const Vocab& vocab);

}  // namespace ariadne
