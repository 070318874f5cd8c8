// Finding a model's tokenizer wherever it is kept.
#pragma once

#include <string>

#include "tokenizer/vocab.h"

namespace ariadne {

// The vocabulary that belongs to a model: a GGUF file's tokenizer.ggml.* metadata, a Hugging Face folder's
// tokenizer.json (or vocab.json + merges.txt) with tokenizer_config.json, or for a llama2.c checkpoint the
// tokenizer.bin named by tokenizer_path (else tokenizer.bin beside the checkpoint). tokenizer_path, when
// given, overrides the model's own. Throws Error naming what was looked for when there is none.
Vocab load_model_vocab(const std::string& model_path, const std::string& tokenizer_path = "");

// A tokenizer file on its own: tokenizer.json, vocab.json (merges.txt beside it), encoder.json (vocab.bpe
// beside it), tokenizer.model (SentencePiece), a llama2.c tokenizer.bin, a GGUF file, or a Hugging Face
// folder. pre names the BPE pre-tokenizer where the files do not say (vocab.json / encoder.json pairs);
// empty keeps the file's own or "default".
Vocab load_vocab_file(const std::string& path, const std::string& pre = "");

}  // namespace ariadne
