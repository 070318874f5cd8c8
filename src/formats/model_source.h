// What every loader (GGUF, Hugging Face safetensors, llama2.c) produces: the model's hyperparameters and
// its tensors under llama.cpp's GGUF tensor names, viewed in place (memory-mapped) where the file allows.
//
// Canonical tensor names (shapes row-major, outermost first; a linear layer is [n_out][n_in]):
//   token_embd.weight            [n_vocab][n_embd]
//   output_norm.weight           [n_embd]
//   output.weight                [n_vocab][n_embd]      (absent when tied to token_embd)
//   blk.{i}.attn_norm.weight     [n_embd]
//   blk.{i}.attn_q.weight        [n_head*head_dim][n_embd]    (+ .bias [n_head*head_dim], qwen2)
//   blk.{i}.attn_k.weight        [n_head_kv*head_dim][n_embd] (+ .bias, qwen2)
//   blk.{i}.attn_v.weight        [n_head_kv*head_dim][n_embd] (+ .bias, qwen2)
//   blk.{i}.attn_output.weight   [n_embd][n_head*head_dim]
//   blk.{i}.attn_q_norm.weight   [head_dim]   (qwen3)
//   blk.{i}.attn_k_norm.weight   [head_dim]   (qwen3)
//   blk.{i}.ffn_norm.weight      [n_embd]
//   blk.{i}.ffn_gate.weight      [n_ff][n_embd]
//   blk.{i}.ffn_up.weight        [n_ff][n_embd]
//   blk.{i}.ffn_down.weight      [n_embd][n_ff]
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace ariadne {

enum class Arch { Llama, Mistral, Qwen2, Qwen3 };

std::string_view arch_name(Arch a);  // "llama", "mistral", "qwen2", "qwen3" (GGUF general.architecture)
bool arch_from_name(std::string_view name, Arch* out);

// How the two halves of each rotated pair are laid out inside a head of Q and K.
//  Interleaved: pairs (2i, 2i+1) — Meta's original layout, llama2.c, and llama.cpp's GGUF files for llama
//               and mistral (its converter permutes the Hugging Face Q/K rows into this layout).
//  NeoX:        pairs (i, i + head_dim/2) — Hugging Face's rotate_half layout; GGUF qwen2/qwen3 keep it.
enum class RopeStyle { Interleaved, NeoX };

enum class RopeScaling { None, Linear, Llama3 };

struct RopeConfig {
  float theta = 10000.0f;
  RopeStyle style = RopeStyle::NeoX;
  RopeScaling scaling = RopeScaling::None;
  float factor = 1.0f;              // linear: positions divided by factor; llama3: low-frequency divisor
  float low_freq_factor = 1.0f;     // llama3 only
  float high_freq_factor = 4.0f;    // llama3 only
  int64_t original_context = 8192;  // llama3 only: original_max_position_embeddings
  // [head_dim/2] divisors of each rotary frequency (llama.cpp's rope_freqs.weight); empty when not given
  std::vector<float> freq_factors;
};

struct ModelConfig {
  Arch arch = Arch::Llama;
  int64_t n_vocab = 0;
  int64_t n_embd = 0;  // hidden size
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;     // not always n_embd / n_head (qwen3)
  int64_t n_ff = 0;         // MLP intermediate size
  int64_t n_ctx_train = 0;  // trained context length (max_position_embeddings)
  float rms_eps = 1e-5f;
  RopeConfig rope;
  bool tied_output = false;  // output head shares token_embd.weight
  int32_t bos_id = -1;       // -1: none
  int32_t eos_id = -1;
};

class ModelSource {
 public:
  ModelConfig config;
  std::string path;                           // file or folder it came from
  std::string format;                         // "gguf", "hf", "llama2c"
  std::map<std::string, TensorView> tensors;  // by canonical name

  // Keeps mappings and converted buffers alive for the TensorViews.
  std::vector<std::shared_ptr<const void>> storage;

  const TensorView* find(std::string_view name) const;
  // Throws Error "<path>: missing tensor '<name>'" when absent.
  const TensorView& get(std::string_view name) const;

  // Stores an owned copy of bytes and returns a pointer into it that lives as long as this source.
  const uint8_t* keep(std::vector<uint8_t> bytes);

  // Set by pack_weights: Q4_0 matrices repacked for the CPU kernels, their bytes, and the time it took.
  int64_t packed_tensors = 0;
  uint64_t packed_bytes = 0;
  double pack_seconds = 0.0;
};

// Repacks every 2-D Q4_0 tensor for the CPU matmul kernels (TensorView::packed, kernels/cpu/packed.h) into
// one buffer kept in storage, a slice of rows at a time; after each
// slice release(data, bytes) is called with the part of the tensor's original bytes packed so far, so a
// caller whose tensors live in a file mapping can drop those pages (MappedFile::release) and resident
// memory does not hold both copies. The GGUF loader calls it.
void pack_weights(ModelSource& source, const std::function<void(const uint8_t*, size_t)>& release);

// Divisor of each of the head_dim/2 rotary frequencies: the explicit freq_factors when the file gives
// them (llama.cpp's rope_freqs.weight), Hugging Face's llama3 rule when scaling is Llama3 (keep high
// frequencies, divide low ones by factor, blend in between), else all 1. Linear scaling is not a
// per-frequency divisor (it scales positions) and is not included.
std::vector<float> rope_freq_divisors(const RopeConfig& rope, int64_t head_dim);

// Opens any supported model: a GGUF file, a llama2.c .bin checkpoint, or a Hugging Face folder (or its
// config.json / .safetensors file). Detects the format from the content, validates the config and that
// every tensor the architecture needs is present with the right shape.
std::unique_ptr<ModelSource> open_model(const std::string& path);

// Checks that config values are in range and that every required tensor exists with its expected shape.
// Throws Error naming the file, the tensor/field and what was expected.
void validate_model(const ModelSource& source);

}  // namespace ariadne
