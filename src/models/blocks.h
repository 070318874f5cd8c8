// Building blocks shared by the model families (llama.cpp's build_norm / build_attn / build_ffn idea).
// Every function is a fixed sequence of ops; the family files decide which ones run and in what order.
#pragma once

#include <cstdint>
#include <vector>

#include "models/model.h"

namespace ariadne::blocks {

// Activation buffers of one forward call, sized for its n_tokens.
struct Activations {
  Activations(const ModelConfig& c, int64_t n_tokens);
  std::vector<float> x;     // [n_tokens][n_embd] residual stream
  std::vector<float> cur;   // [n_tokens][n_embd] normalised input of the current sub-block
  std::vector<float> q;     // [n_tokens][n_head*head_dim]
  std::vector<float> k;     // [n_tokens][n_head_kv*head_dim]
  std::vector<float> v;     // [n_tokens][n_head_kv*head_dim]
  std::vector<float> attn;  // [n_tokens][n_head*head_dim] attention output before o_proj
  std::vector<float> gate;  // [n_tokens][n_ff]
  std::vector<float> up;    // [n_tokens][n_ff]
  std::vector<float> out;   // [n_tokens][n_embd] sub-block output added to the residual
};

// q, k, v = cur · Wq/Wk/Wv (+ biases when the layer has them).
void qkv_projections(const ops::Context& ctx, const LayerWeights& w, int64_t n_tokens, Activations& a);

// Per-head RMSNorm over head_dim (qwen3): x is [n_tokens][n_heads*head_dim].
void head_rms_norm(const ops::Context& ctx, const std::vector<float>& weight, float eps, int64_t n_tokens,
                   int64_t n_heads, float* x);

// RoPE on q and k, keys/values into the KV memory, attention, then out = attn · Wo.
void attention(const ops::Context& ctx, const ModelConfig& c, const ops::RopeTable& rope,
               const LayerWeights& w, int64_t layer, const Batch& batch, ops::KvMemory& kv, Activations& a);

// out = down(silu(gate(cur)) * up(cur)).
void swiglu_ffn(const ops::Context& ctx, const LayerWeights& w, int64_t n_tokens, Activations& a);

// Final RMSNorm and output head for the rows the batch asks logits for.
void logits(const ops::Context& ctx, const ModelConfig& c, const std::vector<float>& output_norm,
            const TensorView& output, const Batch& batch, Activations& a, float* logits);

}  // namespace ariadne::blocks
