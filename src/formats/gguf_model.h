// GGUF <-> ModelSource: llama.cpp's metadata keys mapped to ModelConfig, tensors used in place.
//
// Keys read ({arch} is general.architecture):
//   {arch}.context_length, .embedding_length, .block_count, .feed_forward_length,
//   .attention.head_count, .attention.head_count_kv (default head_count), .attention.layer_norm_rms_epsilon,
//   .attention.key_length (head_dim; default embedding_length / head_count), .attention.value_length (must
//   equal key_length when present), .rope.dimension_count (must equal head_dim when present),
//   .rope.freq_base (default 10000), .rope.scaling.type + .rope.scaling.factor (none | linear),
//   .vocab_size (default: rows of token_embd.weight), tokenizer.ggml.bos_token_id / eos_token_id.
// The tensor rope_freqs.weight (f32 [head_dim/2], Llama-3.x RoPE scaling as llama.cpp's converter stores
// it) becomes RopeConfig::freq_factors and is not put into ModelSource::tensors; scaling stays as the keys
// say (None for such files), so the rope op applies the factors as given.
#pragma once

#include <memory>
#include <string>

#include "formats/gguf.h"
#include "formats/model_source.h"

namespace ariadne {

// Maps and parses a GGUF model. Tensors are views into the mapping, which the returned source keeps
// alive (through the GgufFile in ModelSource::storage). When file_out is given it receives the parsed file
// too, for the tokenizer and other metadata. Checks that config values are sane (naming the key) but not
// tensor shapes (validate_model does that).
std::unique_ptr<ModelSource> load_gguf_model(const std::string& path,
                                             std::shared_ptr<GgufFile>* file_out = nullptr);

// The same over an already parsed file (e.g. one parsed from memory by the fuzzer).
std::unique_ptr<ModelSource> load_gguf_model(std::shared_ptr<GgufFile> file);

// Writes general.architecture (mistral as "llama", as llama.cpp's converter does), general.name,
// general.quantization_version = 2 and the hyperparameter keys above the way convert_hf_to_gguf.py writes
// them (u32 integers, f32 floats), plus the linear-scaling keys when scaling is Linear.
// Left to the caller: general.file_type, tokenizer keys (bos/eos included), tensors, and for Llama-3
// scaling the tensor rope_freqs.weight (rope_freq_divisors(c.rope, c.head_dim)).
// Throws Error when a value does not fit its GGUF type.
void write_gguf_metadata(GgufWriter& w, const ModelConfig& c, const std::string& name);

}  // namespace ariadne
