// A model plus its KV memory and thread pool: feeds token ids at consecutive positions and returns logits.
#pragma once

#include <cstdint>
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
};

class Session {
 public:
  // Decides the KV memory size up front and refuses (Error) when it cannot fit in available memory.
  Session(std::shared_ptr<const ModelSource> source, const SessionOptions& options);

  // Runs ids at positions n_past()..n_past()+ids.size()-1. Returns [ids.size()][n_vocab] logits when
  // all_logits, else [n_vocab] for the last id.
  std::vector<float> eval(std::span<const int32_t> ids, bool all_logits);

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
  int64_t n_batch_;
  int64_t n_past_ = 0;
};

// Bytes of memory the system can still hand out (MemAvailable), or 0 when unknown.
uint64_t available_memory_bytes();

}  // namespace ariadne
