// Synthetic models: GGUF files with random weights in the exact shape of real checkpoints, for
// benchmarks that need real sizes without real weights (and for tests that need a small runnable model).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "formats/model_source.h"

namespace ariadne {

class GgufWriter;

struct SynthShape {
  std::string name;     // as on the command line: "llama-3.2-1b", ...
  std::string hf_name;  // the checkpoint whose config it copies
  ModelConfig config;
  bool qkv_bias = false;
};

const std::vector<SynthShape>& synth_shapes();
// Throws Error listing the known names when name is unknown (case-insensitive).
const SynthShape& find_synth_shape(const std::string& name);

struct SynthOptions {
  DType type = DType::F16;
  uint64_t seed = 1;
  std::function<void(size_t, size_t)> progress;  // (tensors done, total)
  // Writes a tokenizer into the file (the CLI passes one from --tokenizer). Without it the file says
  // tokenizer.ggml.model = "none", which llama.cpp accepts (it then makes n_vocab placeholder tokens).
  std::function<void(GgufWriter&)> extra_metadata;
};

// Parameters of the model (every tensor's element count).
uint64_t synth_param_count(const SynthShape& shape);

// Bytes the file will hold (tensor data only), to check disk space before writing.
uint64_t synth_weight_bytes(const SynthShape& shape, DType type);

// Writes the model. Weights ~ N(0, 0.02) (the usual init scale, keeps activations finite through many
// layers), norm weights 1, biases ~ N(0, 0.02). Each tensor is generated from (seed, tensor name), so the
// file does not depend on the thread count.
void write_synth_model(const SynthShape& shape, const std::string& out_path, const SynthOptions& options,
                       ThreadPool& pool);

}  // namespace ariadne
