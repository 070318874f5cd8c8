// A loaded model: weights (viewed in place from the ModelSource) and the forward pass of its family.
// Each family lives in its own file (llama.cpp, qwen2.cpp, qwen3.cpp) and spells out its computation
// with the shared building blocks of blocks.h, so it reads side by side with Hugging Face's modeling file.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "formats/model_source.h"
#include "ops/context.h"
#include "ops/kv_memory.h"
#include "ops/rope.h"

namespace ariadne {

struct LayerWeights {
  std::vector<float> attn_norm;          // [n_embd]
  const TensorView* wq = nullptr;        // [n_head*head_dim][n_embd]
  const TensorView* wk = nullptr;        // [n_head_kv*head_dim][n_embd]
  const TensorView* wv = nullptr;        // [n_head_kv*head_dim][n_embd]
  const TensorView* wo = nullptr;        // [n_embd][n_head*head_dim]
  std::vector<float> bq, bk, bv;         // q/k/v biases (qwen2); empty when the family has none
  std::vector<float> q_norm, k_norm;     // [head_dim] per-head RMSNorm weights (qwen3); empty otherwise
  std::vector<float> ffn_norm;           // [n_embd]
  const TensorView* ffn_gate = nullptr;  // [n_ff][n_embd]
  const TensorView* ffn_up = nullptr;    // [n_ff][n_embd]
  const TensorView* ffn_down = nullptr;  // [n_embd][n_ff]
};

struct Batch {
  const int32_t* ids;        // [n_tokens]
  const int32_t* positions;  // [n_tokens] absolute positions
  int64_t n_tokens;
  bool all_logits;  // logits for every token, else only for the last one
};

class Model {
 public:
  virtual ~Model() = default;

  // Builds the family's model over a loaded (and validated) source.
  static std::unique_ptr<Model> create(std::shared_ptr<const ModelSource> source);

  const ModelConfig& config() const { return source_->config; }
  const ModelSource& source() const { return *source_; }

  // Runs the batch through every layer, appending its keys/values to kv. logits receives
  // [all_logits ? n_tokens : 1][n_vocab].
  virtual void forward(const ops::Context& ctx, const Batch& batch, ops::KvMemory& kv,
                       float* logits) const = 0;

 protected:
  explicit Model(std::shared_ptr<const ModelSource> source);

  std::shared_ptr<const ModelSource> source_;
  const TensorView* token_embd_;    // [n_vocab][n_embd]
  const TensorView* output_;        // [n_vocab][n_embd]: output.weight, or token_embd when tied
  std::vector<float> output_norm_;  // [n_embd]
  std::vector<LayerWeights> layers_;
  ops::RopeTable rope_;
};

// Per-frequency rotation speeds for a head of Q/K, with linear or llama3 scaling folded in (Hugging Face's
// _compute_default/_linear/_llama3_parameters; llama.cpp's rope_freqs factors when the file gives them).
ops::RopeTable make_rope_table(const ModelConfig& config);

}  // namespace ariadne
