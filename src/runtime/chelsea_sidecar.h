// Chelsea's outlier heads on disk (chelsea.md §2 "Outlier calibration", §6 "Outlier tables belong to one
// checkpoint and one R"): a small GGUF next to the model, `<model>.chelsea.gguf` (for a Hugging Face folder,
// `<folder>.chelsea.gguf`), with no tensors and this metadata:
//   general.architecture = "chelsea", general.type = "sidecar", chelsea.version = 1
//   chelsea.outliers          u32 array: layer * n_kv_heads + head of each head kept full, ascending
//   chelsea.calib_ratio       f32: the budget R the heads were measured at
//   chelsea.outlier_fraction  f32: ρ_out
//   chelsea.n_layer, chelsea.n_head_kv, chelsea.head_dim   u32: the model's shape
//   chelsea.base.fingerprint  string: model_fingerprint() of the checkpoint
//   chelsea.calib.*           how it was measured (windows, ctx, steps, sink, recent, chunk, interval, text)
//   chelsea.head_errors       f32 array [n_layer * n_kv_heads]: each head's mean relative error
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/model_source.h"

namespace ariadne {

class GgufFile;

struct ChelseaSidecar {
  std::vector<int32_t> outliers;  // layer * n_kv_heads + head, ascending
  double calib_ratio = 0.2;
  double outlier_fraction = 0.04;
  int64_t n_layer = 0, n_head_kv = 0, head_dim = 0;
  std::string fingerprint;
  int64_t windows = 0, ctx = 0, steps = 0, sink = 0, recent = 0, chunk = 0, interval = 0;
  std::string text;                // the calibration text's file name
  std::vector<float> head_errors;  // [n_layer * n_head_kv]
};

// "<model>.chelsea.gguf" for a model file, "<folder>.chelsea.gguf" for a Hugging Face folder (or its
// config.json).
std::string chelsea_sidecar_path(const std::string& model_path);

// A checksum of the checkpoint's shape and of its K projections ("fnv1a64:<hex>"): the architecture, the
// sizes, and per layer attn_k.weight's type, shape and bytes (sampled: at most 64 KiB from each of its start,
// middle and end). Changes with any retraining or requantization of K, which is what the outliers depend on.
std::string model_fingerprint(const ModelSource& source);

void write_chelsea_sidecar(const std::string& path, const ChelseaSidecar& sidecar);
// Throws Error naming the file and the key when it is not a Chelsea sidecar or a value is out of range.
ChelseaSidecar read_chelsea_sidecar(const std::string& path);
// The same over a parsed GGUF (a file, or a buffer: the fuzz target); errors name f.path().
ChelseaSidecar read_chelsea_sidecar(const GgufFile& f);

// The outlier heads a chelsea session at `budget` uses. path "": chelsea_sidecar_path(model), used when it
// exists; otherwise that file, which must exist. A sidecar of another checkpoint (fingerprint or shape) is an
// Error; one calibrated at another budget is not used (note says so).
struct ChelseaOutliers {
  std::vector<int32_t> outliers;
  std::string path;  // the sidecar read ("" when none)
  std::string note;  // for users: what was loaded, or why nothing was
};
ChelseaOutliers load_chelsea_outliers(const ModelSource& source, double budget, const std::string& path = "");

}  // namespace ariadne
