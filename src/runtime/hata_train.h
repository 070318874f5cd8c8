// Training HATA's hash inside the engine (../shared/specs/hata.md §2.3): queries and keys collected from a
// dense prefill of calibration text, labels from the exact logits, the loss L_sim + L_bal + L_dec with its
// analytic gradient, and SGD with momentum, per layer, on a thread pool (no autograd, no PyTorch).
//
// Reproducibility: the documents' query positions, each epoch's items and the initial W come from
// mt19937_64 streams seeded by (seed, layer, epoch); the loss is summed over fixed slices of the items and
// reduced in slice order, so the trained weights do not depend on the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "core/thread_pool.h"
#include "formats/model_source.h"
#include "runtime/hata.h"
#include "runtime/session.h"

namespace ariadne {

// One full batch of the loss for one layer (all KV groups jointly). An item is (key, query): key i of group
// g meets the query heads h of g of query `query[i]` with label s[i][h].
template <typename T>
struct HataBatch {
  int64_t d = 0;      // head_dim
  int64_t r = 0;      // bits
  int64_t n_kv = 0;   // KV heads (groups)
  int64_t group = 0;  // query heads per KV head; H = n_kv * group
  int64_t n_queries = 0;
  const T* q = nullptr;            // [n_queries][H][d] post-RoPE queries
  int64_t n = 0;                   // N items
  const T* k = nullptr;            // [n][n_kv][d] each item's key (post-RoPE)
  const int32_t* query = nullptr;  // [n] the item's query, in [0, n_queries)
  const T* s = nullptr;            // [n][H] labels: 20..1 for the top 10% of logits, -1 otherwise
  T sigma = T(0.1), eps = T(0.01), lambda = T(1), eta = T(2);
};

struct HataLossParts {
  double sim = 0, bal = 0, dec = 0;
  double total() const { return sim + bal + dec; }
};

// L = (eps/N) sum_h sum_i s ||u - v||^2 + lambda sum_h ||m_h||^2 + eta ||stack_g(W_g^T W_g - I)||_F with
// u = tanh(sigma q W / 2), v = tanh(sigma k W / 2), m_h = (1/(N r)) sum_i (u + v). w: [n_kv][d][r]. When
// grad is not null it receives dL/dw (same shape). Deterministic for any pool size.
template <typename T>
HataLossParts hata_loss(const HataBatch<T>& batch, const T* w, T* grad, ThreadPool& pool);

// Queries and keys of the hashed layers, collected from dense prefills of the documents (§2.3 data).
struct HataCalibrationData {
  int64_t n_doc = 0, doc_len = 0, m = 0;
  int64_t n_head = 0, n_kv = 0, head_dim = 0;
  std::vector<int32_t> layers;  // the layers collected
  std::vector<int32_t> t;       // [n_doc][m] query positions, drawn from U[doc_len/2, doc_len-1] (distinct)
  struct Layer {
    std::vector<uint16_t> keys;  // [n_doc][doc_len][n_kv][head_dim] bf16
    std::vector<float> q;        // [n_doc][m][n_head][head_dim]
  };
  std::vector<Layer> data;  // [layers.size()]
};

// Prefills each document (from position 0, the session is cleared first) and keeps what `layers` need. The
// documents must all have doc_len tokens. progress(documents done, documents).
HataCalibrationData collect_hata_data(Session& session, const std::vector<std::vector<int32_t>>& docs,
                                      std::vector<int32_t> layers, int64_t m, uint64_t seed,
                                      const std::function<void(int64_t, int64_t)>& progress = {});

struct HataTrainOptions {
  int64_t rbits = 128;
  HataTrainInfo hyper;  // sigma .. seed (items, epochs, iters, m used from here)
  HataScore score = HataScore::Norm;
};

struct HataTrainProgress {
  int32_t layer = 0;
  int64_t step = 0;   // 1-based within the layer
  int64_t steps = 0;  // per layer
  HataLossParts loss;
};

// Trains W for every layer of data (independently, one after another; each step's loss on the pool), from
// W ~ N(0, 1) seeded as random_hata_weights. on_step after every step. The result carries the layers, the
// options and the fingerprint of source.
HataWeights train_hata(const ModelSource& source, const HataCalibrationData& data,
                       const HataTrainOptions& options, ThreadPool& pool,
                       const std::function<void(const HataTrainProgress&)>& on_step = {});

// Mean recall@k of the hash's top k against the exact top k (the oracle: softmax of every query head summed
// over the group) over every collected query, layer and KV head, with k = max(1, ceil(fraction * (t + 1))).
// Layers of data without weights are skipped. Returns NaN when nothing was measured.
double hata_recall(const HataCalibrationData& data, const HataWeights& weights, HataScore score,
                   double fraction, ThreadPool& pool);

// ---- `ariadne calibrate --method hata`: text in, sidecar weights out
// ----------------------------------------

struct HataCalibrateOptions {
  HataTrainOptions train;                   // rbits, score mode, hyper-parameters and seed
  std::vector<int32_t> dense_layers{0, 1};  // not hashed
  int64_t n_doc = 16;                       // training documents (fewer when the text is short)
  int64_t doc_len = 0;                      // tokens per document; 0: min(trained context, 32768)
  int64_t heldout_docs = 1;                 // documents after the training ones, for the recall check
  int64_t heldout_m = 32;                   // query positions per held-out document
  double recall_fraction = 0.0156;          // k = 1.56% of the keys (hata.md §4.7)
  int32_t bos_id = -1;                      // >= 0: each document starts with BOS in place of its first token
  int n_threads = 1;
  int64_t n_batch = 512;
  // Bytes the collected keys and queries may take at once; layers are collected and trained in groups that
  // fit (each group re-reads the documents). 0: half the available memory.
  uint64_t memory_limit = 0;
};

struct HataCalibrateProgress {
  enum class Phase { Collect, Train, Recall };
  Phase phase = Phase::Collect;
  int64_t group = 0, groups = 1;  // layer group (0-based) of groups
  int64_t done = 0, total = 0;    // documents (collect) or steps of the group (train)
  int32_t layer = -1;             // train: the layer being trained
  HataLossParts loss;             // train: the step's loss
};

struct HataCalibration {
  HataWeights weights;
  std::vector<std::vector<HataLossParts>> curve;  // [layers of weights][steps] the loss at each step
  int64_t n_doc = 0, doc_len = 0, groups = 0;
  double collect_seconds = 0, train_seconds = 0;
  // Mean recall@k on the held-out documents (NaN without them): the trained W and the random Gaussian W
  // of the same seed (the hash-random baseline).
  double recall_learned = 0, recall_random = 0;
};

// tokens: the calibration text (documents are cut from its start, back to back). Error when it holds fewer
// than heldout_docs + 1 documents of doc_len tokens.
HataCalibration calibrate_hata(std::shared_ptr<const ModelSource> source, const std::vector<int32_t>& tokens,
                               const HataCalibrateOptions& options,
                               const std::function<void(const HataCalibrateProgress&)>& on_progress = {});

}  // namespace ariadne
