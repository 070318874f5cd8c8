// The attention part of a decode step alone, dense against a top-k selector (`ariadne bench --attn-only`):
// one layer's KV cache of a model's shape filled to a depth with random keys and values, one query token
// attending over it again and again. The selector's own clock splits its time into encode (query codes,
// page bounds), score and select; attend is the rest (gathering the chosen rows and the attention kernel).
// Random keys choose arbitrary entries, but every method's cost depends on the depth and k only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "formats/model_source.h"
#include "runtime/hata.h"
#include "runtime/sparse_attention.h"

namespace ariadne {

struct AttentionBenchOptions {
  std::vector<int64_t> depths{16384};
  int n_threads = 1;
  int repetitions = 20;
  DType kv_type = DType::F16;
  uint64_t seed = 1;
};

struct AttentionBenchRow {
  int64_t depth = 0;
  std::string method;  // "dense" or the selector's
  int64_t k = 0;       // entries each KV head read (mean)
  // Mean wall time of one layer's attention for one token, in seconds: total = encode + score + select +
  // attend.
  double total = 0, encode = 0, score = 0, select = 0, attend = 0;
  uint64_t kv_bytes = 0;    // the layer's K and V
  uint64_t side_bytes = 0;  // the selector's codes or page bounds for the layer
};

// Rows for every depth: dense, then config's method. weights: hata's (the first hashed layer's W is used),
// or null for a random Gaussian W (hash-random; hata without weights times the same path).
std::vector<AttentionBenchRow> bench_attention(const ModelConfig& model, const SparseAttentionConfig& config,
                                               const HataWeights* weights,
                                               const AttentionBenchOptions& options);

}  // namespace ariadne
