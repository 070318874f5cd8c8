// Perplexity and KL divergence against the uncompressed model (long-context-eval.md §3-§4).
//
// Non-overlapping windows of ctx tokens; only the last `scored` tokens of each window are scored. The
// first ctx - scored tokens go through the method's prefill path, the scored ones are teacher-forced one
// at a time through the decode path, so that methods acting on decode steps (Chelsea's rounds, HATA's
// selection) really run. A dense reference session runs in lockstep with every method on identical
// tokens, so no logits are stored: at each scored position both distributions are log-softmaxed in double
// and compared (KL(p_dense || q_method), top-1 agreement, |p - q| on the dense argmax), llama.cpp's
// --kl-divergence idea without its logits file.
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

struct PerplexityOptions {
  int64_t ctx = 4096;       // window length L
  int64_t scored = 512;     // T: the last T tokens of a window are scored (1 <= T < L)
  int64_t max_windows = 0;  // 0: every whole window of the text
  int32_t bos_id = -1;      // >= 0: each window starts with BOS in place of its first token (as llama.cpp)
  int n_threads = 1;
  int64_t n_batch = 512;
  DType kv_type = DType::F32;
};

struct KlStats {
  int64_t n = 0;  // scored positions
  double mean = 0, median = 0, p99 = 0, max = 0;
  double top1_agreement = 0;   // fraction of positions where the argmaxes agree
  double mean_abs_dp_top = 0;  // mean |p - q| on the dense argmax token
};

struct WindowResult {
  int64_t window = 0;
  int64_t start = 0;  // token index of the window in the text
  std::string method;
  double nll_mean = 0;
  double ppl = 0;
  double kl_mean = 0;
  double top1_agreement = 0;
};

struct MethodPerplexity {
  std::string method;
  double ppl = 0;        // exp(mean NLL over every scored token)
  double delta_ppl = 0;  // ppl - dense ppl
  KlStats kl;
};

struct PerplexityResult {
  int64_t n_text_tokens = 0;
  int64_t n_windows = 0;
  int64_t ctx = 0, scored = 0;
  double dense_ppl = 0;
  std::vector<MethodPerplexity> methods;
  std::vector<WindowResult> windows;  // per window and method
};

nlohmann::json to_json(const PerplexityResult& r);

// Throws Error when the text has fewer tokens than one window or the options are out of range.
// on_progress(done, total) counts scored positions.
PerplexityResult run_perplexity(std::shared_ptr<const ModelSource> source, const std::vector<int32_t>& tokens,
                                const MethodRegistry& registry, const std::vector<MethodSpec>& methods,
                                const PerplexityOptions& options,
                                const std::function<void(int64_t, int64_t)>& on_progress = {});

// Statistics of per-position KL values (sorted copy inside).
KlStats kl_stats(std::vector<double> kl, int64_t agree, double abs_dp_sum);

}  // namespace ariadne::eval
