// Chelsea / CentroidKV (../shared/specs/chelsea.md): online clustering of the KV cache that merges entries
// instead of evicting them, and really frees the memory.
//
// compress_to(B) on one (layer, KV head) cuts the mergeable middle — everything but the first S (sinks) and
// the last W (recent) entries — into chunks of c entries; inside each chunk the entries at even offsets (A)
// are matched to their most cosine-similar entry at an odd offset (B) (ToMe's bipartite soft matching), the
// r most similar edges over all chunks are merged, and each B that receives edges becomes the
// degree-weighted centroid of its members. Its degree n is kept as the logit bias ln(n) (the cache's
// per-entry bias, read by every attention path), so a cluster of identical keys attends exactly as its
// members did. Rounds repeat until the head holds B entries. Keys are merged post-RoPE and keep the
// position of their B entry; new tokens keep their absolute positions, so nothing is ever re-rotated.
//
// The policy compresses every non-outlier head of a layer right after a prompt has gone through it
// (Session's layer-by-layer prefill, so peak memory is about one uncompressed layer) and again during decode
// whenever a head reaches B + g entries (every g steps). Outlier heads (`ariadne calibrate --method
// chelsea`) stay full.
//
// Numerics: cosines of unit keys (k / (|k| + 1e-12)) in f32 through the matmul kernel; centroids are
// accumulated in f32 from the dequantized rows and quantized back to the cache type; degrees are whole
// numbers recovered exactly from the bias as round(exp(ln n)) (exact far beyond any context length).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/thread_pool.h"
#include "runtime/kv_cache.h"
#include "runtime/kv_policies.h"

namespace ariadne {

struct ChelseaOptions {
  int64_t sink = 16;    // S: first entries, never merged
  int64_t recent = 64;  // W: last entries, never merged
  int64_t chunk = 256;  // c
};

// One matching edge: A entry a would merge into B entry b of the same chunk with cosine similarity cos.
struct ChelseaEdge {
  float cos = 0;
  int64_t a = 0;  // entry index in the head
  int64_t b = 0;
};

// out[i] = keys[i] / (|keys[i]| + 1e-12) for n rows of d floats.
void chelsea_unit_keys(const float* keys, int64_t n, int64_t d, float* out);

// The edges of one round over the middle [lo, hi): chunks [lo, lo + c), [lo + c, lo + 2c), ...; in each,
// every entry at an even offset from the chunk's start gets an edge to the odd-offset entry of highest cosine
// (ties to the lower b); a chunk of one entry gives none. unit: [hi - lo][d] unit keys of entries lo..hi-1.
// Edges come in order of a. pool runs the cosine tiles (results do not depend on its size).
std::vector<ChelseaEdge> chelsea_match(const float* unit, int64_t lo, int64_t hi, int64_t d, int64_t chunk,
                                       ThreadPool& pool);

// The r best edges pooled over all chunks: highest cosine first, ties to the lower a; in that order.
std::vector<ChelseaEdge> chelsea_select(std::vector<ChelseaEdge> edges, int64_t r);

// Degree of entry j (how many tokens it stands for): 1 without a bias, else round(exp(bias)).
double chelsea_degree(const KvCache& cache, int64_t layer, int64_t kv_head, int64_t j);

// Debug spans: [first position, last position] of the tokens each entry stands for.
using ChelseaSpans = std::vector<std::array<int32_t, 2>>;

// compress_to(target) on one head (chelsea.md §2): rounds of match / select / merge / compact until the head
// holds target entries or its middle has fewer than 2 entries. Returns the number of rounds. spans (when
// not null, one per entry) follow the merges; on_round is called after each round. pool: as chelsea_match.
int64_t chelsea_compress(KvCache& cache, int64_t layer, int64_t kv_head, int64_t target,
                         const ChelseaOptions& options, ThreadPool& pool, ChelseaSpans* spans = nullptr,
                         const std::function<void()>& on_round = {});

class ChelseaPolicy : public BudgetedPolicy {
 public:
  explicit ChelseaPolicy(KvPolicyConfig config);

  std::string_view name() const override { return "chelsea"; }
  void after_store(KvCache& cache, int64_t layer, int64_t n_new) override;
  void after_attend(const ops::Context& ctx, KvCache& cache, int64_t layer,
                    const ops::AttentionQuery& query) override;
  void after_prefill(const ops::Context& ctx, KvCache& cache, int64_t layer) override;
  uint64_t peak_bytes(const KvCacheOptions& options) const override;
  void reset() override;
  std::string describe() const override;

  const ChelseaOptions& options() const { return options_; }
  bool is_outlier(int64_t layer, int64_t kv_head, int64_t n_kv_heads) const;

  // With config.track_spans: the spans of one head's entries.
  const ChelseaSpans& spans(int64_t layer, int64_t kv_head) const;
  // With config.track_spans: every compression of a layer, in order.
  struct Event {
    int64_t layer;
    int64_t n_positions;  // positions the sequence held (the last query's position + 1, or the prompt's end)
    bool prefill;
  };
  const std::vector<Event>& events() const { return events_; }

 private:
  // Compresses every non-outlier head of layer holding more than `above` entries to B.
  bool compress_layer(const ops::Context& ctx, KvCache& cache, int64_t layer, int64_t above);

  ChelseaOptions options_;
  std::vector<bool> outlier_;        // [n_layer * n_kv_heads], sized on the first store
  std::vector<ChelseaSpans> spans_;  // [n_layer * n_kv_heads] with track_spans
  size_t spans_per_layer_ = 0;       // n_kv_heads of the cache the spans follow
  std::vector<Event> events_;
};

}  // namespace ariadne
