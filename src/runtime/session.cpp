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
  const uint64_t need = KvCache::bytes_needed(kv_options);
  const uint64_t avail = available_memory_bytes();
  if (avail != 0 && need > avail)
    fail("a KV cache for {} tokens needs {:.1f} MiB but only {:.1f} MiB of memory is available (lower -c)",
         n_ctx, need / 1048576.0, avail / 1048576.0);
  kv_ = std::make_unique<KvCache>(kv_options);
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

std::vector<float> Session::eval(std::span<const int32_t> ids, bool all_logits) {
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
  }
  return logits;
}

}  // namespace ariadne
