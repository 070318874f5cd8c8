// Llama (Llama 2, Llama 3.x, llama2.c models) and Mistral: Hugging Face's LlamaForCausalLM /
// MistralForCausalLM. Mistral's only difference, sliding-window attention, is off in the checkpoints we
// support (sliding_window null), so both run this graph.
//
//   h = embed(ids)
//   per layer:  h += o_proj(attn(rope(q_proj(n)), rope(k_proj(n)), v_proj(n)))   n = rms_norm(h)
//               h += down(silu(gate(n)) * up(n))                               n = rms_norm(h)
//   logits = lm_head(rms_norm(h))
#include "models/blocks.h"
#include "models/families.h"
#include "ops/ops.h"

namespace ariadne {

namespace {

class LlamaModel : public Model {
 public:
  explicit LlamaModel(std::shared_ptr<const ModelSource> source) : Model(std::move(source)) {}

  void layer(const ops::Context& ctx, int64_t il, const Batch& batch, ops::KvMemory& kv,
             blocks::Activations& a) const override {
    const ModelConfig& c = config();
    const int64_t n = batch.n_tokens;
    const LayerWeights& w = layers_[static_cast<size_t>(il)];
    const int layer = static_cast<int>(il);

    ops::rms_norm(ctx, a.x.data(), w.attn_norm, c.rms_eps, n, a.cur.data());
    ctx.observe("attn_norm", layer, a.cur.data(), n, c.n_embd);
    blocks::qkv_projections(ctx, w, n, a);
    blocks::attention(ctx, c, rope_, w, il, batch, kv, a);
    ops::add_rms_norm(ctx, a.x.data(), a.out.data(), w.ffn_norm, c.rms_eps, n, a.cur.data());
    ctx.observe("ffn_norm", layer, a.cur.data(), n, c.n_embd);
    blocks::swiglu_ffn(ctx, w, n, a);
    ops::add(ctx, a.x.data(), a.out.data(), n * c.n_embd);
    ctx.observe("l_out", layer, a.x.data(), n, c.n_embd);
  }
};

}  // namespace

std::unique_ptr<Model> make_llama_model(std::shared_ptr<const ModelSource> source) {
  return std::make_unique<LlamaModel>(std::move(source));
}

}  // namespace ariadne
