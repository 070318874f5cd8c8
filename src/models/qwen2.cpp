// Qwen2 / Qwen2.5: Hugging Face's Qwen2ForCausalLM. The Llama graph with biases on the q, k and v
// projections (the o projection has none) and the NeoX RoPE layout.
#include "models/blocks.h"
#include "models/families.h"
#include "ops/ops.h"

namespace ariadne {

namespace {

class Qwen2Model : public Model {
 public:
  explicit Qwen2Model(std::shared_ptr<const ModelSource> source) : Model(std::move(source)) {}

  void layer(const ops::Context& ctx, int64_t il, const Batch& batch, ops::KvMemory& kv,
             blocks::Activations& a) const override {
    const ModelConfig& c = config();
    const int64_t n = batch.n_tokens;
    const LayerWeights& w = layers_[static_cast<size_t>(il)];
    const int layer = static_cast<int>(il);

    ops::rms_norm(ctx, a.x.data(), w.attn_norm, c.rms_eps, n, a.cur.data());
    ctx.observe("attn_norm", layer, a.cur.data(), n, c.n_embd);
    blocks::qkv_projections(ctx, w, n, a);  // with bq, bk, bv (required for this family)
    blocks::attention(ctx, c, rope_, w, il, batch, kv, a);
    ops::add_rms_norm(ctx, a.x.data(), a.out.data(), w.ffn_norm, c.rms_eps, n, a.cur.data());
    ctx.observe("ffn_norm", layer, a.cur.data(), n, c.n_embd);
    blocks::swiglu_ffn(ctx, w, n, a);
    ops::add(ctx, a.x.data(), a.out.data(), n * c.n_embd);
    ctx.observe("l_out", layer, a.x.data(), n, c.n_embd);
  }
};

}  // namespace

std::unique_ptr<Model> make_qwen2_model(std::shared_ptr<const ModelSource> source) {
  return std::make_unique<Qwen2Model>(std::move(source));
}

}  // namespace ariadne
