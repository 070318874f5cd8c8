#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/quants.h"

namespace ariadne {

namespace {

bool supported_kv_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0;
}

int64_t blocks_for(int64_t n, int64_t block_size) {
  return (n + block_size - 1) / block_size;
}

}  // namespace

KvCache::KvCache(const KvCacheOptions& o) : options_(o) {
  ARIADNE_CHECK(o.n_layer > 0 && o.n_kv_heads > 0 && o.head_dim > 0 && o.n_ctx > 0 && o.block_size > 0,
                "kv cache options must be positive");
  if (!supported_kv_type(o.type))
    fail("KV cache type {} is not supported (expected f32, f16, bf16 or q8_0)", dtype_name(o.type));
  if (o.head_dim % block_size(o.type) != 0)
    fail("KV cache type {} needs head_dim to be a multiple of {}, the model has {}", dtype_name(o.type),
         block_size(o.type), o.head_dim);
  row_bytes_ = row_bytes(o.type, o.head_dim);
  heads_.resize(static_cast<size_t>(o.n_layer * o.n_kv_heads));
}

uint64_t KvCache::bytes_per_token(const KvCacheOptions& o) {
  return static_cast<uint64_t>(o.n_layer * o.n_kv_heads) *
         (2 * row_bytes(o.type, o.head_dim) + sizeof(int32_t));
}

uint64_t KvCache::bytes_needed(const KvCacheOptions& o) {
  const int64_t padded = blocks_for(o.n_ctx, o.block_size) * o.block_size;
  return bytes_per_token(o) * static_cast<uint64_t>(padded);
}

uint64_t KvCache::head_bytes(const KvCacheOptions& o, int64_t n_entries, bool with_bias) {
  const auto slots = static_cast<uint64_t>(blocks_for(n_entries, o.block_size) * o.block_size);
  return slots * (2 * row_bytes(o.type, o.head_dim) + sizeof(int32_t) + (with_bias ? sizeof(float) : 0));
}

uint64_t KvPolicy::peak_bytes(const KvCacheOptions& options) const {
  return KvCache::bytes_needed(options);
}

uint64_t KvCache::bytes() const {
  uint64_t total = 0;
  for (const Head& h : heads_) {
    total +=
        (h.k_blocks.size() + h.v_blocks.size()) * static_cast<uint64_t>(options_.block_size) * row_bytes_;
    total += h.positions.capacity() * sizeof(int32_t) + h.bias.capacity() * sizeof(float);
  }
  return total;
}

void KvCache::clear() {
  for (Head& h : heads_) h = Head{};
  if (policy_) policy_->reset();
  if (selector_) selector_->reset();
}

void KvCache::set_selector(std::shared_ptr<AttentionSelector> selector) {
  selector_ = std::move(selector);
  if (selector_) selector_->reset();
}

void KvCache::key_rewritten(int64_t layer, int64_t kv_head, int64_t j) {
  ARIADNE_CHECK(j >= 0 && j < size(layer, kv_head), "key_rewritten: entry out of range");
  if (selector_) selector_->after_rewrite(*this, layer, kv_head, j);
}

void KvCache::truncate(int64_t n_positions) {
  std::vector<int64_t> keep;
  for (int64_t l = 0; l < options_.n_layer; ++l) {
    for (int64_t g = 0; g < options_.n_kv_heads; ++g) {
      const Head& h = head(l, g);
      keep.clear();
      for (int64_t j = 0; j < h.n; ++j)
        if (h.positions[static_cast<size_t>(j)] < n_positions) keep.push_back(j);
      if (static_cast<int64_t>(keep.size()) != h.n) compact(l, g, keep);
    }
  }
}

void KvCache::reserve(Head& h, int64_t n) {
  const int64_t blocks = blocks_for(n, options_.block_size);
  const size_t block_bytes = static_cast<size_t>(options_.block_size) * row_bytes_;
  while (static_cast<int64_t>(h.k_blocks.size()) < blocks) {
    h.k_blocks.emplace_back(static_cast<uint8_t*>(::operator new[](block_bytes, kBlockAlign)));
    h.v_blocks.emplace_back(static_cast<uint8_t*>(::operator new[](block_bytes, kBlockAlign)));
  }
  const size_t slots = static_cast<size_t>(blocks * options_.block_size);
  if (h.positions.size() < slots) {
    h.positions.reserve(slots);  // exact: grows by whole blocks only
    h.positions.resize(slots, 0);
    if (!h.bias.empty()) {
      h.bias.reserve(slots);
      h.bias.resize(slots, 0.0f);
    }
  }
}

void KvCache::release(Head& h) {
  const int64_t blocks = blocks_for(h.n, options_.block_size);
  h.k_blocks.resize(static_cast<size_t>(blocks));
  h.v_blocks.resize(static_cast<size_t>(blocks));
  const size_t slots = static_cast<size_t>(blocks * options_.block_size);
  h.positions.resize(slots);
  h.positions.shrink_to_fit();
  if (!h.bias.empty()) {
    h.bias.resize(slots);
    h.bias.shrink_to_fit();
  }
}

const uint8_t* KvCache::key_row(int64_t layer, int64_t kv_head, int64_t j) const {
  const Head& h = head(layer, kv_head);
  return h.k_blocks[static_cast<size_t>(j / options_.block_size)].get() +
         (j % options_.block_size) * row_bytes_;
}
const uint8_t* KvCache::value_row(int64_t layer, int64_t kv_head, int64_t j) const {
  const Head& h = head(layer, kv_head);
  return h.v_blocks[static_cast<size_t>(j / options_.block_size)].get() +
         (j % options_.block_size) * row_bytes_;
}
uint8_t* KvCache::key_row(int64_t layer, int64_t kv_head, int64_t j) {
  return const_cast<uint8_t*>(static_cast<const KvCache*>(this)->key_row(layer, kv_head, j));
}
uint8_t* KvCache::value_row(int64_t layer, int64_t kv_head, int64_t j) {
  return const_cast<uint8_t*>(static_cast<const KvCache*>(this)->value_row(layer, kv_head, j));
}

float* KvCache::bias(int64_t layer, int64_t kv_head) {
  Head& h = head(layer, kv_head);
  return h.bias.empty() ? nullptr : h.bias.data();
}

const float* KvCache::bias(int64_t layer, int64_t kv_head) const {
  const Head& h = head(layer, kv_head);
  return h.bias.empty() ? nullptr : h.bias.data();
}

void KvCache::enable_bias(int64_t layer, int64_t kv_head) {
  Head& h = head(layer, kv_head);
  if (!h.bias.empty()) return;
  h.bias.reserve(h.positions.size());
  h.bias.assign(h.positions.size(), 0.0f);
}

void KvCache::compact(int64_t layer, int64_t kv_head, std::span<const int64_t> keep) {
  Head& h = head(layer, kv_head);
  int64_t out = 0;
  for (size_t i = 0; i < keep.size(); ++i) {
    const int64_t j = keep[i];
    ARIADNE_CHECK(j >= out && j < h.n && (i == 0 || keep[i - 1] < j),
                  "compact: keep must be ascending entries");
    if (j != out) {
      std::memcpy(key_row(layer, kv_head, out), key_row(layer, kv_head, j), row_bytes_);
      std::memcpy(value_row(layer, kv_head, out), value_row(layer, kv_head, j), row_bytes_);
      h.positions[static_cast<size_t>(out)] = h.positions[static_cast<size_t>(j)];
      if (!h.bias.empty()) h.bias[static_cast<size_t>(out)] = h.bias[static_cast<size_t>(j)];
    }
    ++out;
  }
  h.n = out;
  release(h);
  if (selector_) selector_->after_compact(*this, layer, kv_head, keep);
}

void KvCache::store(const ops::Context& ctx, int64_t layer, int64_t n_tokens, const int32_t* positions,
                    const float* k, const float* v) {
  const int64_t d = options_.head_dim;
  const int64_t row = options_.n_kv_heads * d;
  const cpu::RowKernels& kernels = cpu::row_kernels(options_.type);
  for (int64_t g = 0; g < options_.n_kv_heads; ++g) {
    Head& h = head(layer, g);
    if (h.n + n_tokens > options_.n_ctx)
      fail("context full: {} cached + {} new tokens exceed the KV cache size of {} (raise -c)", h.n, n_tokens,
           options_.n_ctx);
    reserve(h, h.n + n_tokens);
    for (int64_t t = 0; t < n_tokens; ++t) {
      kernels.quantize(k + t * row + g * d, key_row(layer, g, h.n + t), d);
      kernels.quantize(v + t * row + g * d, value_row(layer, g, h.n + t), d);
      h.positions[static_cast<size_t>(h.n + t)] = positions[t];
      h.latest = std::max(h.latest, positions[t]);
      // A slot a compaction vacated may still hold an old entry's bias: new entries start unbiased.
      if (!h.bias.empty()) h.bias[static_cast<size_t>(h.n + t)] = 0.0f;
    }
    h.n += n_tokens;
  }
  if (selector_) selector_->after_store(ctx, *this, layer, n_tokens);
  if (policy_) policy_->after_store(*this, layer, n_tokens);
}

void KvCache::attend(const ops::Context& ctx, int64_t layer, const ops::AttentionQuery& query) {
  const int64_t n_kv = options_.n_kv_heads;
  const int64_t group = query.n_heads / n_kv;
  std::vector<std::vector<const uint8_t*>> k_ptrs(static_cast<size_t>(n_kv)),
      v_ptrs(static_cast<size_t>(n_kv));
  std::vector<std::vector<int32_t>> indices(static_cast<size_t>(n_kv));
  std::vector<cpu::KvHeadView> views(static_cast<size_t>(n_kv));
  // A selector chooses entries per query token; with one token (decode) its choice applies to the whole call.
  const bool sparse_ok = selector_ != nullptr && query.n_tokens == 1;
  if (sparse_ok) selector_->begin_select(ctx, *this, layer, query);
  for (int64_t g = 0; g < n_kv; ++g) {
    const Head& h = head(layer, g);
    auto& kp = k_ptrs[static_cast<size_t>(g)];
    auto& vp = v_ptrs[static_cast<size_t>(g)];
    for (size_t b = 0; b < h.k_blocks.size(); ++b) {
      kp.push_back(h.k_blocks[b].get());
      vp.push_back(h.v_blocks[b].get());
    }
    cpu::KvHeadView& view = views[static_cast<size_t>(g)];
    view.k_blocks = kp.data();
    view.v_blocks = vp.data();
    view.positions = h.positions.data();
    view.max_position = h.latest;
    view.bias = h.bias.empty() ? nullptr : h.bias.data();
    view.n = h.n;
    view.indices = nullptr;
    view.n_indices = 0;
    auto& idx = indices[static_cast<size_t>(g)];
    if (sparse_ok &&
        selector_->select(*this, layer, g, query.q + g * group * options_.head_dim, group, idx)) {
      view.indices = idx.data();
      view.n_indices = static_cast<int64_t>(idx.size());
    }
  }
  cpu::AttentionParams p{};
  p.q = query.q;
  p.q_token_stride = query.n_heads * options_.head_dim;
  p.q_positions = query.positions;
  p.n_tokens = query.n_tokens;
  p.n_heads = query.n_heads;
  p.n_kv_heads = n_kv;
  p.head_dim = options_.head_dim;
  p.kv_type = options_.type;
  p.block_size = options_.block_size;
  p.heads = views.data();
  p.scale = query.scale;
  p.out = query.out;
  p.out_token_stride = query.n_heads * options_.head_dim;
  std::vector<int32_t> argmax;
  if (selector_ != nullptr && selector_->wants_argmax(layer)) {
    argmax.assign(static_cast<size_t>(query.n_heads), -1);
    p.argmax_last = argmax.data();
  }
  cpu::attention(p, ctx.pool);
  if (!argmax.empty()) selector_->after_attend(*this, layer, argmax);
  if (policy_) policy_->after_attend(ctx, *this, layer, query);
}

}  // namespace ariadne
