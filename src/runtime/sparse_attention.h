// Top-k attention for decoding: what a decode step reads of each KV head (../shared/specs/hata.md). Four
// AttentionSelectors with one budget rule, one forced set and the same dense layers, so they compare at
// equal budget (§5):
//   hata         learned sign hashes (a sidecar from `ariadne calibrate --method hata`): key codes made as
//                keys enter the cache, the query's codes each step, Hamming or norm-weighted scores summed
//                over the GQA group, a linear-time top-k (§2.2)
//   hash-random  the same path with an untrained Gaussian projection (isolates the value of training)
//   exact-topk   the oracle: the true softmax of every query head, summed over the group
//   quest        Quest's page bounds: per page of 16 entries and channel the min and max key, a page scores
//                sum_h sum_d max(q_d min_d, q_d max_d); the best pages plus the current partial page
// Prefill stays dense (selectors act on single-token steps only) and so do the dense layers (default 0 and
// 1). A head with no more entries than k is read whole. Attention then runs over the chosen entries through
// the kernel's index path (kernels/cpu/attention.h), with their logit biases (Chelsea's ln(degree)).
//
// A decode step of a layer: begin_select encodes the query (timed as "encode"), scores every head's entries
// split across the pool's threads ("score"), then chooses per head ("select"); select() hands the result to
// the cache. Key codes and page bounds follow the cache's compactions and rewrites (AttentionSelector's
// hooks), so the selectors compose with KV policies that compress (Chelsea).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "formats/model_source.h"
#include "runtime/hata.h"
#include "runtime/kv_cache.h"

namespace ariadne {

struct SparseAttentionConfig {
  std::string method = "dense";  // dense, hata, hash-random, exact-topk, quest
  // Entries each KV head reads: <= 1 a fraction of the head's entries (k = ceil(topk * n)), > 1 a whole
  // number of entries; 0: hata.md's default min(n, max(512, ceil(n / 64))).
  double topk = 0;
  std::vector<int32_t> dense_layers{0, 1};  // layers that always read every entry
  int64_t sink = 0;                         // first entries always read (counted inside k)
  int64_t recent = 0;              // last entries always read (counted inside k); the current token always is
  std::string sidecar;             // hata: the weights file; empty: hata_sidecar_path(model path)
  std::optional<HataScore> score;  // hata, hash-random: overrides the sidecar's mode (default norm)
  int64_t rbits = 128;             // hash-random: bits per code
  uint64_t seed = 42;              // hash-random: seed of the Gaussian projection
  int64_t page = 16;               // quest: entries per page
  // [ours] Each step also reads the entry after the one each query head of the group attended most in the
  // previous step (the last prompt token's, at the first decode step), forced inside k: copying a span
  // (an induction head) moves its attention one entry on per token, which a hash can lose.
  bool follow = true;
};

// The methods make_sparse_selector() knows (besides dense), in help order.
const std::vector<std::string>& sparse_attention_methods();

// "1/16", "0.0625" (fractions <= 1) or "512" (entries); flag names the option in errors.
double parse_topk(std::string_view text, std::string_view flag);

// Throws Error naming the flag (--attn, --topk, --attn-dense-layers, --attn-sink, --attn-recent,
// --hash-bits, --quest-page) when a value is out of range.
void validate_sparse_attention(const SparseAttentionConfig& config);

// "on" -> true, "off" -> false; Error naming flag otherwise.
bool parse_follow(std::string_view text, std::string_view flag);

// "0,1" -> {0, 1}; "" or "none" -> {}. Throws Error naming flag on anything but layers >= 0.
std::vector<int32_t> parse_layer_list(std::string_view text, std::string_view flag);

// k for a head of n entries (at least 1, at most n).
int64_t topk_entries(double topk, int64_t n);

// Wall time and counts over the decode steps so far.
struct SparseAttentionStats {
  int64_t steps = 0;          // (layer, token) decode steps that went through begin_select
  int64_t sparse_heads = 0;   // (layer, token, KV head) reads that were sparse
  int64_t dense_heads = 0;    // ... that read every entry (dense layer, or n <= k)
  int64_t entries_read = 0;   // entries read by the sparse ones
  int64_t entries_held = 0;   // entries their heads held
  double encode_seconds = 0;  // query codes (hata), page bounds brought up to date (quest)
  double score_seconds = 0;
  double select_seconds = 0;
};

class SparseSelector : public AttentionSelector {
 public:
  SparseSelector(SparseAttentionConfig config, const ModelConfig& model);

  bool select(const KvCache& cache, int64_t layer, int64_t kv_head, const float* q, int64_t group,
              std::vector<int32_t>& indices) override;
  void begin_select(const ops::Context& ctx, const KvCache& cache, int64_t layer,
                    const ops::AttentionQuery& query) override;

  const SparseAttentionConfig& config() const { return config_; }
  bool is_dense_layer(int64_t layer) const;
  void reset() override;  // subclasses that override it call it too
  bool wants_argmax(int64_t layer) const override;
  void after_attend(const KvCache& cache, int64_t layer, std::span<const int32_t> argmax) override;

  const SparseAttentionStats& stats() const { return stats_; }
  void reset_stats() { stats_ = {}; }
  // One line for users: the method and its parameters.
  virtual std::string describe() const;

 protected:
  // One KV head's work in a step: its scores, its choice.
  struct HeadWork {
    bool sparse = false;
    int64_t n = 0, k = 0;
    std::vector<uint32_t> ham;  // [n] integer scores (smaller is better) when use_u32
    std::vector<float> score;   // [n] (or [pages]) float scores (larger is better) otherwise
    std::vector<float> aux;     // a method's own per-step buffer (exact-topk: the logits [group][n])
    bool use_u32 = false;
    uint32_t max_score = 0;
    std::vector<int32_t> indices;
    std::vector<uint32_t> hist;     // scratch of the selection (u32 scores)
    std::vector<uint32_t> scratch;  // scratch of the selection (float scores)
  };

  // Before scoring (single-threaded part of the step): encode the query and bring side data up to date.
  virtual void prepare(const ops::Context& ctx, const KvCache& cache, int64_t layer,
                       const ops::AttentionQuery& query) {}
  // Units of scoring work of a head of n entries (entries, or pages for quest).
  virtual int64_t score_units(int64_t n) const { return n; }
  // Scores units [u0, u1) of head g into w (sized by size_scores first). May run on several threads for
  // different ranges of the same head.
  virtual void size_scores(HeadWork& w, int64_t units) const;
  virtual void score(const KvCache& cache, int64_t layer, int64_t g, const float* q, int64_t group,
                     int64_t u0, int64_t u1, HeadWork& w) const = 0;
  // Fills w.indices from the scores (default: top-k of w.ham or w.score with the forced set).
  virtual void choose(const KvCache& cache, int64_t layer, int64_t g, const float* q, int64_t group,
                      HeadWork& w) const;
  // config.follow: gives the successors of the last step's most attended entries of head g the best score
  // of unit (entry / unit_size) before the top-k; nothing when the head has changed other than by one new
  // entry since (a truncation, a compaction).
  void force_followed(int64_t layer, int64_t g, HeadWork& w, int64_t unit_size) const;

  SparseAttentionConfig config_;
  ModelConfig model_;
  int64_t layer_ = -1;           // the layer whose choice `heads_` holds
  std::vector<HeadWork> heads_;  // [n_kv_heads]
  SparseAttentionStats stats_;

 private:
  struct Followed {
    std::vector<int32_t> next;  // entries after the group's most attended ones
    int64_t n = -1;             // entries the head held then
  };
  std::vector<Followed> followed_;  // [n_layer][n_kv_heads]
};

// The selector of config for this model; null for "dense". hata reads the sidecar (config.sidecar, or the
// one beside the model) and refuses one made for another model.
std::shared_ptr<SparseSelector> make_sparse_selector(const SparseAttentionConfig& config,
                                                     const ModelSource& source);

// The hash selector over given weights (hata with a sidecar, hash-random with random weights, tests).
std::shared_ptr<SparseSelector> make_hash_selector(const SparseAttentionConfig& config,
                                                   const ModelConfig& model, HataWeights weights);

}  // namespace ariadne
