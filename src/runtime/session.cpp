#include "runtime/session.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <string>

#include "core/error.h"

namespace ariadne {

uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit) {
    if (key == "MemAvailable:") return value * 1024;
  }
  return 0;
}

uint64_t session_kv_bytes(const KvCacheOptions& options, const KvPolicy* policy, int64_t n_embd) {
  if (policy == nullptr) return KvCache::bytes_needed(options);
  uint64_t bytes = policy->peak_bytes(options);
  if (policy->compresses_prefill())
    bytes += static_cast<uint64_t>(options.n_ctx) * static_cast<uint64_t>(n_embd) * sizeof(float);
  return bytes;
}

Session::Session(std::shared_ptr<const ModelSource> source, const SessionOptions& options)
    : model_(Model::create(std::move(source))),
      pool_(options.n_threads),
      ctx_{pool_, {}, options.exact_matmul},
      n_batch_(std::max<int64_t>(1, options.n_batch)) {
  const ModelConfig& c = model_->config();
  int64_t n_ctx = options.n_ctx;
  if (n_ctx <= 0) n_ctx = std::min<int64_t>(c.n_ctx_train > 0 ? c.n_ctx_train : 4096, 4096);
  KvCacheOptions kv_options;
  kv_options.n_layer = c.n_layer;
  kv_options.n_kv_heads = c.n_head_kv;
  kv_options.head_dim = c.head_dim;
  kv_options.n_ctx = n_ctx;
  kv_options.type = options.kv_type;
  const KvPolicy* policy = options.kv_policy.get();
  const uint64_t need = session_kv_bytes(kv_options, policy, c.n_embd);
  const uint64_t avail = options.memory_limit != 0 ? options.memory_limit : available_memory_bytes();
  if (avail != 0 && need > avail) {
    if (policy == nullptr)
      fail("a KV cache for {} tokens needs {:.1f} MiB but only {:.1f} MiB of memory is available (lower -c)",
           n_ctx, need / 1048576.0, avail / 1048576.0);
    fail(
        "a KV cache for {} tokens under the {} policy needs up to {:.1f} MiB but only {:.1f} MiB of "
        "memory is available (lower -c or the KV budget)",
        n_ctx, policy->name(), need / 1048576.0, avail / 1048576.0);
  }
  kv_ = std::make_unique<KvCache>(kv_options);
  if (options.kv_policy) kv_->set_policy(options.kv_policy);
}

void Session::clear() {
  kv_->clear();
  n_past_ = 0;
}

void Session::truncate(int64_t n_keep) {
  if (n_keep < 0 || n_keep > n_past_)
    fail("cannot keep {} tokens of a session that holds {} (expected 0 to {})", n_keep, n_past_, n_past_);
  kv_->truncate(n_keep);
  n_past_ = n_keep;
}

std::vector<float> Session::eval(std::span<const int32_t> ids, bool all_logits,
                                 const EvalProgress& progress) {
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t n_vocab = model_->config().n_vocab;
  if (n == 0) fail("no tokens to evaluate");
  if (n_past_ + n > n_ctx())
    fail("{} tokens after {} already evaluated exceed the context of {} tokens (raise -c)", n, n_past_,
         n_ctx());
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= n_vocab)
      fail("token id {} at index {} is outside the vocabulary [0, {})", ids[i], i, n_vocab);
  }
  std::vector<float> logits(static_cast<size_t>((all_logits ? n : 1) * n_vocab));
  KvPolicy* policy = kv_->policy();
  if (policy != nullptr && policy->compresses_prefill() && n > 1) {
    eval_layer_major(ids, all_logits, progress, logits.data());
    return logits;
  }
  for (int64_t start = 0; start < n; start += n_batch_) {
    const int64_t len = std::min(n_batch_, n - start);
    std::vector<int32_t> positions(static_cast<size_t>(len));
    std::iota(positions.begin(), positions.end(), static_cast<int32_t>(n_past_));
    const bool last_chunk = start + len == n;
    Batch batch{ids.data() + start, positions.data(), len, all_logits};
    if (all_logits) {
      model_->forward(ctx_, batch, *kv_, logits.data() + start * n_vocab);
    } else if (last_chunk) {
      model_->forward(ctx_, batch, *kv_, logits.data());
    } else {
      std::vector<float> discard(static_cast<size_t>(n_vocab));
      model_->forward(ctx_, batch, *kv_, discard.data());
    }
    n_past_ += len;
    if (progress && !progress(start + len, n))
      fail("prefill cancelled after {} of {} tokens", start + len, n);
  }
  return logits;
}

void Session::eval_layer_major(std::span<const int32_t> ids, bool all_logits, const EvalProgress& progress,
                               float* logits) {
  const int64_t n = static_cast<int64_t>(ids.size());
  const int64_t n_layer = model_->config().n_layer;
  KvPolicy& policy = *kv_->policy();
  std::vector<int32_t> positions(static_cast<size_t>(n));
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(n_past_));
  Batch batch{ids.data(), positions.data(), n, all_logits};
  policy.begin_prefill(*kv_, n_past_ + n);
  try {
    model_->forward_layer_major(
        ctx_, batch, n_batch_, *kv_, logits,
        [&](int64_t layer, int64_t done) {
          // Token-layers done, in tokens: reaches n only when the last layer is through.
          const int64_t scaled = (layer * n + done) / n_layer;
          if (progress && !progress(scaled, n))
            fail(
                "prefill cancelled; the session was cleared (the KV policy compresses each layer as the "
                "prompt goes through it, so part of a prompt cannot stay)");
        },
        [&](int64_t layer) { policy.after_prefill(ctx_, *kv_, layer); });
  } catch (...) {
    // Some layers hold the prompt, compressed together with what the cache held before (a merged entry may
    // stand for old and new tokens alike), others part of it: no consistent state short of an empty cache.
    policy.end_prefill(*kv_);
    clear();
    throw;
  }
  policy.end_prefill(*kv_);
  n_past_ += n;
}

}  // namespace ariadne
