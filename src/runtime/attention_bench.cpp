#include "runtime/attention_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include <unistd.h>

#include "core/error.h"
#include "core/thread_pool.h"
#include "runtime/kv_cache.h"

namespace ariadne {
namespace {

// Reads a buffer larger than the last-level cache, so the next attention call finds the layer's K/V, codes
// and page bounds in memory only, as a decode step does (between two visits of a layer it streams the other
// layers' weights and caches). Not timed.
class CacheEvictor {
 public:
  CacheEvictor() {
    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (llc <= 0) llc = 64L << 20;
    bytes_ = std::clamp<size_t>(2 * static_cast<size_t>(llc), size_t{64} << 20, size_t{1} << 30);
    buf_.assign(bytes_ / sizeof(uint64_t), 1);
  }
  void run(ThreadPool& pool) {
    const size_t n = buf_.size(), per = (n + pool.size() - 1) / pool.size();
    std::vector<uint64_t> sums(pool.size());
    pool.run([&](int t) {
      const size_t b = std::min(n, per * static_cast<size_t>(t)), e = std::min(n, b + per);
      uint64_t sum = 0;
      for (size_t i = b; i < e; i += 8) sum += buf_[i];  // one read per 64-byte line
      sums[static_cast<size_t>(t)] = sum;
    });
    sink_ += std::accumulate(sums.begin(), sums.end(), uint64_t{0});
  }

 private:
  size_t bytes_ = 0;
  std::vector<uint64_t> buf_;
  uint64_t sink_ = 0;
};

}  // namespace

std::vector<AttentionBenchRow> bench_attention(const ModelConfig& model, const SparseAttentionConfig& config,
                                               const HataWeights* weights, const AttentionBenchOptions& o) {
  if (o.repetitions < 1) fail("-r: expected at least 1 repetition, got {}", o.repetitions);
  using Clock = std::chrono::steady_clock;
  // One layer of the model's shape, hashed (the dense layers are a per-model choice, not what is timed).
  ModelConfig one = model;
  one.n_layer = 1;
  SparseAttentionConfig c = config;
  c.dense_layers.clear();
  ThreadPool pool(o.n_threads);
  const ops::Context ctx{pool, {}};
  const int64_t d = model.head_dim, n_kv = model.n_head_kv, H = model.n_head;
  std::vector<AttentionBenchRow> rows;
  CacheEvictor evict;
  for (const int64_t depth : o.depths) {
    if (depth < 1) fail("-d: attention is timed over at least one entry, got depth {}", depth);
    KvCacheOptions ko;
    ko.n_layer = 1;
    ko.n_kv_heads = n_kv;
    ko.head_dim = d;
    ko.n_ctx = depth;
    ko.type = o.kv_type;
    KvCache cache(ko);
    // Random keys and values, written in chunks (a whole 64K-entry layer at once would double the memory).
    const int64_t chunk = 4096;
    std::vector<float> k, v;
    std::vector<int32_t> pos;
    for (int64_t t0 = 0; t0 < depth; t0 += chunk) {
      const int64_t n = std::min(chunk, depth - t0);
      k.resize(static_cast<size_t>(n * n_kv * d));
      v.resize(k.size());
      fill_gaussian(o.seed * 1000003u + static_cast<uint64_t>(t0), k.data(), k.size());
      fill_gaussian(o.seed * 1000033u + static_cast<uint64_t>(t0), v.data(), v.size());
      pos.resize(static_cast<size_t>(n));
      std::iota(pos.begin(), pos.end(), static_cast<int32_t>(t0));
      cache.store(ctx, 0, n, pos.data(), k.data(), v.data());
    }
    std::vector<float> q(static_cast<size_t>(H * d)), out(q.size());
    fill_gaussian(o.seed + 7, q.data(), q.size());
    const auto qpos = static_cast<int32_t>(depth);
    const ops::AttentionQuery query{q.data(),  &qpos, 1, H, 1.0f / std::sqrt(static_cast<float>(d)),
                                    out.data()};

    for (const bool sparse : {false, true}) {
      std::shared_ptr<SparseSelector> sel;
      if (sparse) {
        if (c.method == "hata" || c.method == "hash-random") {
          HataWeights w = random_hata_weights(one, {0}, c.rbits, c.seed);
          if (weights != nullptr && !weights->layers.empty()) {
            w.rbits = weights->rbits;
            w.w = {weights->w.front()};
            w.score = weights->score;
          }
          sel = make_hash_selector(c, one, std::move(w));
        } else {
          ModelSource src;
          src.config = one;
          sel = make_sparse_selector(c, src);
        }
      }
      cache.set_selector(sel);
      if (sel) sel->after_store(ctx, cache, 0, depth);  // codes / page bounds for the entries already held
      for (int i = 0; i < 2; ++i) cache.attend(ctx, 0, query);  // warm up
      if (sel) sel->reset_stats();
      double total = 0;
      for (int i = 0; i < o.repetitions; ++i) {
        evict.run(pool);
        const Clock::time_point t0 = Clock::now();
        cache.attend(ctx, 0, query);
        total += std::chrono::duration<double>(Clock::now() - t0).count();
      }
      total /= o.repetitions;
      AttentionBenchRow row;
      row.depth = depth;
      row.method = sparse ? c.method : "dense";
      row.total = total;
      row.kv_bytes = cache.bytes();
      row.k = depth;
      if (sel) {
        const SparseAttentionStats& st = sel->stats();
        row.encode = st.encode_seconds / o.repetitions;
        row.score = st.score_seconds / o.repetitions;
        row.select = st.select_seconds / o.repetitions;
        row.k = st.sparse_heads > 0 ? st.entries_read / st.sparse_heads : depth;
        row.side_bytes = sel->bytes();
      }
      row.attend = std::max(0.0, total - row.encode - row.score - row.select);
      rows.push_back(row);
    }
    cache.set_selector(nullptr);
  }
  return rows;
}

}  // namespace ariadne
