// Attention fidelity in shadow-dense mode (long-context-eval.md §5): how far each method's attention is from
// dense attention, per layer and head, with the errors kept from compounding.
//
// A dense KV cache drives the model; every method keeps its own cache beside it (a Session prepared by the
// method, so its KV policy compresses and its selector chooses as in `eval run`), which receives the same
// keys and values. Each text window is prefilled (layer by layer, so a policy compresses each layer as it
// would in a session), then `steps` tokens are teacher-forced through the decode path. At each of those steps
// and each layer, every method attends with the *same* query as dense, and the model continues from the dense
// output (isolated mode: KL in `eval ppl` covers the compounding). Per method:
//   output error   |o_method - o_dense| / (|o_dense| + 1e-12) per (layer, query head, step)
//   top-k recall   selectors (hata, exact-topk, quest, hash-random): |S ∩ S*| / |S*| per (layer, KV head,
//                  step), S* the exact top |S| of the entries the selector chose from, by softmax summed over
//                  the group's query heads, with the same forced entries (sinks, recent, the current token);
//                  a chosen entry tied with S*'s last one (within 1e-6 relative, or 1e-37: below a float's
//                  range, where the selectors' own softmaxes see zeros) counts as a hit
//   mass recall    selectors: the softmax mass of the chosen entries, averaged over the group
//   kept mass      KV policies: the dense softmax mass of the positions the method still holds as they were
//                  (bias 0: neither merged nor evicted), averaged over the group
//   log-Z error    KV policies: |ln Z_method - ln Z_dense| per (layer, query head, step), Z the softmax
//                  normaliser with the method's logit biases (Chelsea's ln(degree))
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "eval/methods.h"
#include "formats/model_source.h"

namespace ariadne::eval {

struct FidelityOptions {
  int64_t ctx = 4096;       // window length: ctx - steps prompt tokens, then steps decoded
  int64_t steps = 64;       // teacher-forced decode steps measured per window
  int64_t max_windows = 8;  // 0: every whole window of the text
  int32_t bos_id = -1;      // >= 0: each window starts with BOS in place of its first token
  int n_threads = 1;
  int64_t n_batch = 512;
  DType kv_type = DType::F32;
};

// Mean and 95th percentile of one metric over the samples of a head or layer (n = 0: not measured there).
struct MetricSummary {
  int64_t n = 0;
  double mean = 0, p95 = 0;
};

// One metric of one method: per layer, per head of each layer (query heads for the output and log-Z errors,
// KV heads for the recalls), and the mean over the layers measured.
struct MetricTable {
  std::vector<MetricSummary> layers;              // [n_layer]
  std::vector<std::vector<MetricSummary>> heads;  // [n_layer][heads]
  double mean_over_layers = 0;                    // NaN when no layer has samples
  bool measured() const;
};

struct MethodFidelity {
  std::string method;
  MetricTable output_error;
  MetricTable topk_recall;  // selectors only
  MetricTable mass_recall;  // selectors only
  MetricTable kept_mass;    // KV policies only
  MetricTable log_z_error;  // KV policies only
};

struct FidelityResult {
  int64_t n_text_tokens = 0;
  int64_t n_windows = 0;
  int64_t ctx = 0, steps = 0;
  int64_t n_layer = 0, n_head = 0, n_head_kv = 0;
  std::vector<MethodFidelity> methods;
};

nlohmann::json to_json(const FidelityResult& r);

// Throws Error when the text holds less than one window, the options are out of range, or a method chooses
// what the model reads (xl3m, truncate: fidelity compares attention over the same tokens).
// on_progress(done, total) counts measured decode steps.
FidelityResult run_fidelity(std::shared_ptr<const ModelSource> source, const std::vector<int32_t>& tokens,
                            const MethodRegistry& registry, const std::vector<MethodSpec>& methods,
                            const FidelityOptions& options,
                            const std::function<void(int64_t, int64_t)>& on_progress = {});

}  // namespace ariadne::eval
