// Finding Chelsea's outlier heads (chelsea.md §2 "Outlier calibration"; the criterion is ours): for each
// text window, a dense prefill and `steps` teacher-forced decode steps, while a shadow cache receives the
// same keys and values under the Chelsea policy (every head compressed, budget R of the window). At each
// decode step, with the same queries, each KV head's attention output over the shadow is compared with the
// dense one: ||o_shadow - o_dense|| / ||o_dense||, averaged over the group's query heads, then over steps and
// windows. The model itself always continues from the dense outputs, so each head's error is its own. The
// ceil(ρ_out · n_layer · n_kv_heads) heads of largest error are the outliers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/dtype.h"
#include "formats/model_source.h"
#include "runtime/chelsea.h"

namespace ariadne {

struct ChelseaCalibrationOptions {
  double ratio = 0.2;              // R the heads are measured at (a fraction of the window)
  double outlier_fraction = 0.04;  // ρ_out
  int64_t windows = 8;
  int64_t ctx = 8192;  // tokens per window, steps of them decoded one at a time
  int64_t steps = 64;
  ChelseaOptions chelsea;  // S, W, c
  int64_t interval = 64;   // g
  int32_t bos_id = -1;     // >= 0: each window starts with BOS in place of its first token
  int n_threads = 1;
  int64_t n_batch = 512;
  DType kv_type = DType::F32;
};

struct ChelseaCalibration {
  int64_t n_windows = 0;
  std::vector<double> head_error;   // [n_layer * n_kv_heads] mean relative attention-output error
  std::vector<double> layer_error;  // [n_layer] mean over the layer's heads
  // [n_layer * n_kv_heads] how similar the entries Chelsea merges are: the median cosine of a first round's
  // edges on the dense cache after each prompt (before any merge), averaged over windows.
  std::vector<double> edge_cosine;
  std::vector<int32_t> outliers;  // ascending
};

// tokens: the calibration text; windows of ctx tokens are taken from its start, back to back (fewer when it
// is shorter; Error when it holds less than one). on_progress(windows done, windows).
ChelseaCalibration calibrate_chelsea(std::shared_ptr<const ModelSource> source,
                                     const std::vector<int32_t>& tokens,
                                     const ChelseaCalibrationOptions& options,
                                     const std::function<void(int64_t, int64_t)>& on_progress = {});

}  // namespace ariadne
