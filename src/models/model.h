// A loaded model: weights (viewed in place from the ModelSource) and the forward pass of its family.
// Each family lives in its own file (llama.cpp, qwen2.cpp, qwen3.cpp) and spells out its computation
// with the shared building blocks of blocks.h, so it reads side by side with Hugging Face's modeling file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "formats/model_source.h"
#include "ops/context.h"
#include "ops/kv_memory.h"
#include "ops/rope.h"

namespace ariadne {

namespace blocks {
struct Activations;
}

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
  void forward(const ops::Context& ctx, const Batch& batch, ops::KvMemory& kv, float* logits) const;

  // forward() of a long batch, layer by layer: every chunk of n_batch tokens goes through layer l (keys and
  // values stored, attention read) before any chunk goes through layer l + 1. after_chunk(l, tokens done)
  // follows each chunk and after_layer(l) each layer (either may be empty; an exception thrown there stops
  // the pass). Each token meets the same KV entries and the same row-wise arithmetic as in forward() over
  // the same chunks in order, so the logits are bit-identical, while a KV policy can compress layer l as
  // soon as the whole batch is in it. Holds the residual stream of the whole batch ([n_tokens][n_embd]).
  void forward_layer_major(const ops::Context& ctx, const Batch& batch, int64_t n_batch, ops::KvMemory& kv,
                           float* logits, const std::function<void(int64_t, int64_t)>& after_chunk,
                           const std::function<void(int64_t)>& after_layer) const;

 protected:
  explicit Model(std::shared_ptr<const ModelSource> source);

  // One decoder layer of the family: a.x ([batch.n_tokens][n_embd], the residual stream) in, a.x out,
  // keys and values of `layer` appended to kv.
  virtual void layer(const ops::Context& ctx, int64_t layer, const Batch& batch, ops::KvMemory& kv,
                     blocks::Activations& a) const = 0;

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
