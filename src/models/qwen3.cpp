// Qwen3 (dense): Hugging Face's Qwen3ForCausalLM. The Llama graph plus an RMSNorm over each head of q
// and of k (q_norm / k_norm, weights [head_dim]) before RoPE; head_dim is set independently of
// hidden_size / num_heads; no projection biases.
#include "models/blocks.h"
#include "models/families.h"
#include "ops/ops.h"

namespace ariadne {

namespace {

class Qwen3Model : public Model {
 public:
  explicit Qwen3Model(std::shared_ptr<const ModelSource> source) : Model(std::move(source)) {}

  void layer(const ops::Context& ctx, int64_t il, const Batch& batch, ops::KvMemory& kv,
             blocks::Activations& a) const override {
    const ModelConfig& c = config();
    const int64_t n = batch.n_tokens;
    const LayerWeights& w = layers_[static_cast<size_t>(il)];
    const int layer = static_cast<int>(il);

    ops::rms_norm(ctx, a.x.data(), w.attn_norm, c.rms_eps, n, a.cur.data());
    ctx.observe("attn_norm", layer, a.cur.data(), n, c.n_embd);
    blocks::qkv_projections(ctx, w, n, a);
    blocks::head_rms_norm(ctx, w.q_norm, c.rms_eps, n, c.n_head, a.q.data());
    blocks::head_rms_norm(ctx, w.k_norm, c.rms_eps, n, c.n_head_kv, a.k.data());
    ctx.observe("q_norm", layer, a.q.data(), n, c.n_head * c.head_dim);
    blocks::attention(ctx, c, rope_, w, il, batch, kv, a);
    ops::add_rms_norm(ctx, a.x.data(), a.out.data(), w.ffn_norm, c.rms_eps, n, a.cur.data());
    ctx.observe("ffn_norm", layer, a.cur.data(), n, c.n_embd);
    blocks::swiglu_ffn(ctx, w, n, a);
    ops::add(ctx, a.x.data(), a.out.data(), n * c.n_embd);
    ctx.observe("l_out", layer, a.x.data(), n, c.n_embd);
  }
};

}  // namespace

std::unique_ptr<Model> make_qwen3_model(std::shared_ptr<const ModelSource> source) {
  return std::make_unique<Qwen3Model>(std::move(source));
}

}  // namespace ariadne
