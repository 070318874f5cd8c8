// A model plus its KV memory and thread pool: feeds token ids at consecutive positions and returns logits.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "models/model.h"
#include "runtime/kv_cache.h"

namespace ariadne {

struct SessionOptions {
  int64_t n_ctx = 0;  // KV entries per layer; 0 = the model's trained context, capped at 4096
  int n_threads = 1;
  int64_t n_batch = 512;       // tokens per forward call when prefilling (bounds activation memory)
  DType kv_type = DType::F32;  // KV cache element type (f32 keeps the exact reference results; f16 halves it)
  // Quantized weights computed with f32 activations instead of 8-bit ones (ops::Context::exact_matmul).
  bool exact_matmul = false;
  // What the KV cache keeps (null: every entry). Given here rather than later through kv().set_policy() so
  // that the memory check counts what the policy can hold at most (KvPolicy::peak_bytes), not a full cache.
  std::shared_ptr<KvPolicy> kv_policy;
  // Bytes the KV cache may take; 0: the memory the system has available (MemAvailable).
  uint64_t memory_limit = 0;
};

// Progress of a multi-token eval, called after each chunk: tokens done (for a layer-by-layer prefill, the
// token-layers done scaled to tokens) and the total. Returning false cancels the eval.
using EvalProgress = std::function<bool(int64_t done, int64_t total)>;

class Session {
 public:
  // Decides the KV memory size up front and refuses (Error) when it cannot fit in available memory.
  Session(std::shared_ptr<const ModelSource> source, const SessionOptions& options);

  // Runs ids at positions n_past()..n_past()+ids.size()-1, in chunks of n_batch. Returns
  // [ids.size()][n_vocab] logits when all_logits, else [n_vocab] for the last id.
  //
  // When the KV policy compresses_prefill() and ids holds more than one token, the chunks go through the
  // model layer by layer (Model::forward_layer_major) and the policy compresses each layer once the whole
  // prompt is in it, so only one layer is ever uncompressed; the logits equal the chunk-by-chunk ones.
  //
  // A cancelled eval (progress returned false) throws Error; chunk by chunk, the chunks done stay
  // evaluated; layer by layer, the session is cleared (compression may have merged earlier entries with the
  // prompt's, so no earlier state survives it exactly).
  std::vector<float> eval(std::span<const int32_t> ids, bool all_logits, const EvalProgress& progress = {});

  // Forgets every cached token (the next eval starts at position 0).
  void clear();
  // Keeps the first n_keep positions (0 <= n_keep <= n_past()) and forgets the rest: the next eval starts at
  // position n_keep, as if only those tokens had been evaluated.
  void truncate(int64_t n_keep);

  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return kv_->options().n_ctx; }
  const Model& model() const { return *model_; }
  const KvCache& kv() const { return *kv_; }
  KvCache& kv() { return *kv_; }
  ops::Context& context() { return ctx_; }

 private:
  std::unique_ptr<Model> model_;
  ThreadPool pool_;
  ops::Context ctx_;
  std::unique_ptr<KvCache> kv_;
  void eval_layer_major(std::span<const int32_t> ids, bool all_logits, const EvalProgress& progress,
                        float* logits);

  int64_t n_batch_;
  int64_t n_past_ = 0;
};

// Bytes of memory the system can still hand out (MemAvailable), or 0 when unknown.
uint64_t available_memory_bytes();

// Bytes a session of these cache options holds in KV memory at most under policy (null: every head full),
// plus, when the policy compresses prompts layer by layer, the residual stream of an n_ctx-token prompt
// (Model::forward_layer_major keeps [n_ctx][n_embd] floats).
uint64_t session_kv_bytes(const KvCacheOptions& options, const KvPolicy* policy, int64_t n_embd);

}  // namespace ariadne
