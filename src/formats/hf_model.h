// Loader for Hugging Face model folders: config.json plus safetensors weights (one file, an index with
// shards, or every *.safetensors in the folder). Supports LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM and Qwen3ForCausalLM. Tensors are renamed to the canonical GGUF names of
// model_source.h and viewed in place in their stored dtype (F32, F16 or BF16).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "formats/model_source.h"

namespace ariadne {

// Parses config.json text. Reads both RoPE styles (top-level rope_theta + rope_scaling, and the newer
// rope_parameters). Throws Error naming path_for_errors and the offending field for malformed JSON, wrong
// types, out-of-range or inconsistent sizes, an unsupported architecture or RoPE type.
// Does not know whether the checkpoint has lm_head.weight: tied_output reflects tie_word_embeddings only.
ModelConfig parse_hf_config(const std::string& json_text, const std::string& path_for_errors);

// Canonical GGUF name of a Hugging Face tensor name ("model.layers.3.mlp.up_proj.weight" ->
// "blk.3.ffn_up.weight"); nullopt for names the engine does not use (rotary_emb.inv_freq, unknown ones).
std::optional<std::string> hf_to_gguf_name(std::string_view hf_name);

// path: the model folder, its config.json, or one of its .safetensors files (the whole folder is loaded).
// Does not check tensor shapes against the config (validate_model does).
std::unique_ptr<ModelSource> load_hf_model(const std::string& path);

}  // namespace ariadne
