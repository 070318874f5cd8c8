// Loader for legacy ("version 0") llama2.c checkpoints, as written by karpathy/llama2.c export.py
// legacy_export and read by run.c.
//
// Layout (all little-endian; float32 arrays row-major, kv_dim = dim * n_kv_heads / n_heads,
// head_size = dim / n_heads):
//   int32 header[7]: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//                    (vocab_size < 0: the classifier is not shared and follows at the end)
//   token_embedding [vocab][dim]
//   rms_att         [n_layers][dim]
//   wq              [n_layers][dim][dim]
//   wk              [n_layers][kv_dim][dim]
//   wv              [n_layers][kv_dim][dim]
//   wo              [n_layers][dim][dim]
//   rms_ffn         [n_layers][dim]
//   w1              [n_layers][hidden_dim][dim]   (gate)
//   w2              [n_layers][dim][hidden_dim]   (down)
//   w3              [n_layers][hidden_dim][dim]   (up)
//   rms_final       [dim]
//   freq_cis_real   [seq_len][head_size / 2]      (unused: RoPE is recomputed)
//   freq_cis_imag   [seq_len][head_size / 2]      (unused)
//   wcls            [vocab][dim]                  (only when vocab_size < 0)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "formats/model_source.h"

namespace ariadne {

// True when the bytes start with a plausible llama2.c header and the size is exactly what it implies.
// Never throws; used by open_model to tell a llama2.c .bin from other files.
bool looks_like_llama2c(const uint8_t* data, size_t size);

// Maps the file and views every weight in place (f32). Throws Error naming the file and the header field
// for implausible headers or a size that does not match.
std::unique_ptr<ModelSource> load_llama2c_model(const std::string& path);
// The same over bytes the caller keeps alive as long as the result (the weights are views into them; data
// must be 4-byte aligned); errors name `path`. load_llama2c_model is this over the file's mapping.
std::unique_ptr<ModelSource> parse_llama2c_model(const uint8_t* data, size_t size, const std::string& path);

}  // namespace ariadne
